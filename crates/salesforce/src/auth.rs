//! OAuth 2.0 (spec §2): login URLs, the authorize URL, the token grants and userinfo.
//!
//! Connect modes map onto grants:
//! - `browser` / `code`: [`authorize_url`] sends the user to Salesforce, then
//!   [`exchange_code`] swaps the returned code for tokens (with a refresh token);
//! - `api`: [`Grant::RefreshToken`];
//! - `clientcredentials`: [`Grant::ClientCredentials`] (credentials in the body);
//! - tools and tests: [`Grant::Password`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_core::SecretString;
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::error::{Result, SalesforceError, parse_error_response};

/// Builds the login base URL from a `domain`: a bare host (`acme.my.salesforce.com`,
/// `login.salesforce.com`) gets `https://`; a full URL (`http://127.0.0.1:5200`) is used
/// as given. Paths, queries and fragments are refused.
pub fn login_base_url(domain: &str) -> Result<Url> {
    let domain = domain.trim().trim_end_matches('/');
    if domain.is_empty() {
        return Err(SalesforceError::Config(
            "the Salesforce domain is empty".into(),
        ));
    }
    let text = if domain.contains("://") {
        domain.to_string()
    } else {
        format!("https://{domain}")
    };
    base_url(&text).map_err(|message| {
        SalesforceError::Config(format!("invalid Salesforce domain {domain:?}: {message}"))
    })
}

/// Parses an instance or login base URL (`scheme://host[:port]`).
pub fn base_url(text: &str) -> std::result::Result<Url, String> {
    let url = Url::parse(text.trim().trim_end_matches('/')).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("unsupported scheme {}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("missing host".into());
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err("must not contain a path".into());
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err("must not contain a query, fragment or credentials".into());
    }
    Ok(url)
}

/// Joins a base URL and an absolute path (`/services/...`).
pub(crate) fn join(base: &Url, path: &str) -> Result<Url> {
    let mut url = base.clone();
    let (path_part, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    url.set_path(path_part);
    url.set_query(query);
    Ok(url)
}

/// A connected app's identity.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    /// Consumer key.
    pub client_id: String,
    /// Consumer secret (optional for some refresh-token apps).
    pub client_secret: Option<SecretString>,
}

impl OAuthApp {
    /// An app with a secret.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<SecretString>) -> Self {
        OAuthApp {
            client_id: client_id.into(),
            client_secret: Some(client_secret.into()),
        }
    }
}

/// Parameters of the authorize redirect.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// Connected app consumer key.
    pub client_id: String,
    /// Where Salesforce sends the browser back (`/oauth/salesforce/callback`).
    pub redirect_uri: String,
    /// Opaque state echoed back (CSRF protection and flow correlation).
    pub state: String,
    /// Scopes, e.g. `api refresh_token offline_access`.
    pub scope: String,
    /// Optional `prompt` (`login`, `consent`).
    pub prompt: Option<String>,
    /// Optional PKCE `code_challenge` (S256).
    pub code_challenge: Option<String>,
}

/// The default scopes Ferry asks for.
pub const DEFAULT_SCOPE: &str = "api refresh_token offline_access";

/// Builds `https://login/services/oauth2/authorize?response_type=code&...`.
pub fn authorize_url(login: &Url, request: &AuthorizeRequest) -> Result<Url> {
    let mut url = join(login, "/services/oauth2/authorize")?;
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("response_type", "code");
        pairs.append_pair("client_id", &request.client_id);
        pairs.append_pair("redirect_uri", &request.redirect_uri);
        pairs.append_pair("state", &request.state);
        if !request.scope.is_empty() {
            pairs.append_pair("scope", &request.scope);
        }
        if let Some(prompt) = &request.prompt {
            pairs.append_pair("prompt", prompt);
        }
        if let Some(challenge) = &request.code_challenge {
            pairs.append_pair("code_challenge", challenge);
            pairs.append_pair("code_challenge_method", "S256");
        }
    }
    Ok(url)
}

/// An OAuth grant sent to `/services/oauth2/token`.
#[derive(Debug, Clone)]
pub enum Grant {
    /// `authorization_code` (web-server flow).
    AuthorizationCode {
        /// The code from the redirect.
        code: SecretString,
        /// The same redirect URI used in the authorize request.
        redirect_uri: String,
        /// PKCE verifier, when a challenge was sent.
        code_verifier: Option<SecretString>,
    },
    /// `refresh_token`.
    RefreshToken(SecretString),
    /// `client_credentials` (the app's run-as user).
    ClientCredentials,
    /// `password` (username plus password and security token).
    Password {
        /// Username.
        username: String,
        /// Password (with the security token appended when required).
        password: SecretString,
    },
}

impl Grant {
    fn name(&self) -> &'static str {
        match self {
            Grant::AuthorizationCode { .. } => "authorization_code",
            Grant::RefreshToken(_) => "refresh_token",
            Grant::ClientCredentials => "client_credentials",
            Grant::Password { .. } => "password",
        }
    }
}

/// A token endpoint response (spec §2.2).
#[derive(Debug, Clone)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: SecretString,
    /// A refresh token: from the code flow, or a rotated one on refresh.
    pub refresh_token: Option<SecretString>,
    /// Where the org's APIs live.
    pub instance_url: String,
    /// Identity URL `<login>/id/<orgId>/<userId>`.
    pub id: Option<String>,
    /// Token type (`Bearer`).
    pub token_type: Option<String>,
    /// Granted scopes.
    pub scope: Option<String>,
    /// When the token was issued (`issued_at`, epoch ms as a string).
    pub issued_at: Option<DateTime<Utc>>,
    /// Signature (HMAC of id + issued_at), kept for callers who verify it.
    pub signature: Option<String>,
}

impl TokenResponse {
    /// The org id (second-to-last segment of the identity URL).
    pub fn org_id(&self) -> Option<&str> {
        let id = self.id.as_deref()?;
        let mut segments = id.trim_end_matches('/').rsplit('/');
        let _user = segments.next()?;
        segments.next()
    }

    /// The user id (last segment of the identity URL).
    pub fn user_id(&self) -> Option<&str> {
        self.id.as_deref()?.trim_end_matches('/').rsplit('/').next()
    }

    /// Parses a token response body.
    pub fn from_json(body: &[u8]) -> Result<TokenResponse> {
        #[derive(Deserialize)]
        struct Raw {
            access_token: Option<String>,
            refresh_token: Option<String>,
            instance_url: Option<String>,
            id: Option<String>,
            token_type: Option<String>,
            scope: Option<String>,
            issued_at: Option<Json>,
            signature: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|e| SalesforceError::parse("token response", e.to_string()))?;
        let access_token = raw
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| SalesforceError::parse("token response", "no access_token"))?;
        let instance_url = raw
            .instance_url
            .filter(|u| !u.is_empty())
            .ok_or_else(|| SalesforceError::parse("token response", "no instance_url"))?;
        base_url(&instance_url).map_err(|e| {
            SalesforceError::parse(
                "token response",
                format!("bad instance_url {instance_url:?}: {e}"),
            )
        })?;
        let issued_at = match raw.issued_at {
            Some(Json::String(text)) => text
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_millis),
            Some(Json::Number(n)) => n.as_i64().and_then(DateTime::from_timestamp_millis),
            _ => None,
        };
        Ok(TokenResponse {
            access_token: SecretString::new(access_token),
            refresh_token: raw
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(SecretString::new),
            instance_url: instance_url.trim_end_matches('/').to_string(),
            id: raw.id,
            token_type: raw.token_type,
            scope: raw.scope,
            issued_at,
            signature: raw.signature,
        })
    }
}

/// Builds the HTTP client used for OAuth calls made outside a [`crate::SalesforceClient`].
pub fn default_http_client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .gzip(true)
        .build()
        .map_err(|e| SalesforceError::Config(format!("cannot build the HTTP client: {e}")))
}

/// Posts a grant to `<login>/services/oauth2/token`.
pub async fn request_token(
    http: &reqwest::Client,
    login: &Url,
    app: &OAuthApp,
    grant: &Grant,
) -> Result<TokenResponse> {
    let url = join(login, "/services/oauth2/token")?;
    let mut form: Vec<(&str, String)> = vec![
        ("grant_type", grant.name().to_string()),
        ("client_id", app.client_id.clone()),
    ];
    if let Some(secret) = &app.client_secret {
        form.push(("client_secret", secret.expose().to_string()));
    }
    match grant {
        Grant::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => {
            form.push(("code", code.expose().to_string()));
            form.push(("redirect_uri", redirect_uri.clone()));
            if let Some(verifier) = code_verifier {
                form.push(("code_verifier", verifier.expose().to_string()));
            }
        }
        Grant::RefreshToken(token) => form.push(("refresh_token", token.expose().to_string())),
        Grant::ClientCredentials => {
            if app.client_secret.is_none() {
                return Err(SalesforceError::Config(
                    "the client_credentials grant needs a client secret".into(),
                ));
            }
        }
        Grant::Password { username, password } => {
            form.push(("username", username.clone()));
            form.push(("password", password.expose().to_string()));
        }
    }
    tracing::debug!(grant = grant.name(), url = %url, "requesting salesforce token");
    let response = http
        .post(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|e| SalesforceError::transport(&url, e))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .bytes()
        .await
        .map_err(|e| SalesforceError::transport(&url, e))?;
    if !status.is_success() {
        return Err(oauth_error(status.as_u16(), content_type.as_deref(), &body));
    }
    TokenResponse::from_json(&body)
}

/// Errors from OAuth endpoints come back as [`SalesforceError::OAuth`] when they have the
/// OAuth shape, or as whatever [`parse_error_response`] makes of them.
fn oauth_error(status: u16, content_type: Option<&str>, body: &[u8]) -> SalesforceError {
    match parse_error_response(status, content_type, body, None) {
        SalesforceError::Api(api) if api.error_code.starts_with("HTTP_") => {
            SalesforceError::OAuth {
                status,
                error: format!("http_{status}"),
                description: api.message,
            }
        }
        other => other,
    }
}

/// Exchanges an authorization code for tokens (the end of the `browser` and `code` flows).
pub async fn exchange_code(
    http: &reqwest::Client,
    login: &Url,
    app: &OAuthApp,
    code: &str,
    redirect_uri: &str,
) -> Result<TokenResponse> {
    let grant = Grant::AuthorizationCode {
        code: SecretString::new(code),
        redirect_uri: redirect_uri.to_string(),
        code_verifier: None,
    };
    request_token(http, login, app, &grant).await
}

/// Revokes a token (`POST /services/oauth2/revoke`).
pub async fn revoke(http: &reqwest::Client, login: &Url, token: &SecretString) -> Result<()> {
    let url = join(login, "/services/oauth2/revoke")?;
    let response = http
        .post(url.clone())
        .form(&[("token", token.expose())])
        .send()
        .await
        .map_err(|e| SalesforceError::transport(&url, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .bytes()
        .await
        .map_err(|e| SalesforceError::transport(&url, e))?;
    Err(oauth_error(status.as_u16(), content_type.as_deref(), &body))
}

/// `GET /services/oauth2/userinfo` (spec §2.4). Unknown keys are kept in `other`.
#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    /// Identity URL.
    #[serde(default)]
    pub sub: Option<String>,
    /// User id.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Org id.
    #[serde(default)]
    pub organization_id: Option<String>,
    /// The username (`preferred_username`).
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Time zone.
    #[serde(default)]
    pub zoneinfo: Option<String>,
    /// Every other key.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Json>,
}

impl UserInfo {
    /// The username Ferry shows for a connection.
    pub fn username(&self) -> Option<&str> {
        self.preferred_username.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_urls_from_domains() {
        assert_eq!(
            login_base_url("acme.my.salesforce.com")
                .expect("bare host")
                .as_str(),
            "https://acme.my.salesforce.com/"
        );
        assert_eq!(
            login_base_url("http://127.0.0.1:5200/")
                .expect("full url")
                .as_str(),
            "http://127.0.0.1:5200/"
        );
        assert_eq!(
            login_base_url(" login.salesforce.com ")
                .expect("trimmed")
                .host_str(),
            Some("login.salesforce.com")
        );
        assert!(login_base_url("").is_err());
        assert!(login_base_url("ftp://x").is_err());
        assert!(login_base_url("https://x/services").is_err());
        assert!(login_base_url("https://user:pw@x").is_err());
        assert!(login_base_url("https://x?a=b").is_err());
    }

    #[test]
    fn builds_authorize_url() {
        let login = login_base_url("http://127.0.0.1:5200").expect("url");
        let url = authorize_url(
            &login,
            &AuthorizeRequest {
                client_id: "ferry emu".into(),
                redirect_uri: "http://localhost:5100/oauth/salesforce/callback".into(),
                state: "s&1".into(),
                scope: DEFAULT_SCOPE.into(),
                prompt: None,
                code_challenge: None,
            },
        )
        .expect("url");
        assert_eq!(url.path(), "/services/oauth2/authorize");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("response_type".into(), "code".into()));
        assert!(pairs.contains(&("client_id".into(), "ferry emu".into())));
        assert!(pairs.contains(&(
            "redirect_uri".into(),
            "http://localhost:5100/oauth/salesforce/callback".into()
        )));
        assert!(pairs.contains(&("state".into(), "s&1".into())));
        assert!(pairs.contains(&("scope".into(), DEFAULT_SCOPE.into())));
    }

    #[test]
    fn parses_token_response() {
        let body = br#"{"access_token":"00D000000000001!abc","refresh_token":"5Aep","signature":"sig","scope":"api refresh_token","instance_url":"https://na1.salesforce.com/","id":"https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P","token_type":"Bearer","issued_at":"1309974610026"}"#;
        let token = TokenResponse::from_json(body).expect("valid");
        assert_eq!(token.access_token.expose(), "00D000000000001!abc");
        assert_eq!(
            token.refresh_token.as_ref().map(SecretString::expose),
            Some("5Aep")
        );
        assert_eq!(token.instance_url, "https://na1.salesforce.com");
        assert_eq!(token.org_id(), Some("00Dx0000000BV7z"));
        assert_eq!(token.user_id(), Some("005x00000012Q9P"));
        assert_eq!(
            token.issued_at.map(|t| t.timestamp_millis()),
            Some(1_309_974_610_026)
        );
        let no_refresh = TokenResponse::from_json(
            br#"{"access_token":"a","instance_url":"http://127.0.0.1:1","issued_at":1}"#,
        )
        .expect("valid");
        assert!(no_refresh.refresh_token.is_none());
        assert!(TokenResponse::from_json(br#"{"instance_url":"http://x"}"#).is_err());
        assert!(
            TokenResponse::from_json(br#"{"access_token":"a","instance_url":"nope"}"#).is_err()
        );
        assert!(TokenResponse::from_json(b"<html/>").is_err());
        assert!(!format!("{token:?}").contains("abc"), "tokens never print");
    }

    #[test]
    fn oauth_errors_keep_their_shape() {
        match oauth_error(
            400,
            None,
            br#"{"error":"invalid_client_id","error_description":"client identifier invalid"}"#,
        ) {
            SalesforceError::OAuth { error, .. } => assert_eq!(error, "invalid_client_id"),
            other => panic!("{other:?}"),
        }
        match oauth_error(404, Some("text/html"), b"<html>Not found</html>") {
            SalesforceError::OAuth {
                error, description, ..
            } => {
                assert_eq!(error, "http_404");
                assert_eq!(description, "Not Found");
            }
            other => panic!("{other:?}"),
        }
    }
}
