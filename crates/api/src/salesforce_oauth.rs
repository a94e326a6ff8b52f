//! Completing Salesforce authorization for the `browser` and `code` connect modes.
//!
//! - Creating (or reconnecting) such a connection records a single-use state
//!   ([`begin_authorization`]); the connection response carries `auth_url` — Salesforce's
//!   authorize page for `browser`, Ferry's code page for `code` (with `auth_code`).
//! - `GET/POST /oauth/salesforce/code`: the small page where a user enters the `auth_code`;
//!   it sends the browser on to Salesforce's authorize page.
//! - `GET /oauth/salesforce/callback`: where Salesforce sends the browser back with `code`
//!   and `state`. Ferry exchanges the code with its connected app, learns the username,
//!   stores the refresh token (encrypted) and marks the connection healthy, then follows the
//!   connection's `redirect_url` if one was given.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use ferry_connectors::salesforce::{SalesforceConfig, SalesforceConnector, describe_error};
use ferry_salesforce::SalesforceClient;
use ferry_salesforce::auth::{
    AuthorizeRequest, DEFAULT_SCOPE, authorize_url, exchange_code, login_base_url,
};
use ferry_store::OAuthState;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::AppState;
use crate::connections;
use crate::error::{ApiError, ApiResult};
use crate::routes::{ApiRoutes, Operation};

/// Path of the OAuth callback.
pub const CALLBACK_PATH: &str = "/oauth/salesforce/callback";
/// Path of the page where `auth_code`s are entered.
pub const CODE_PATH: &str = "/oauth/salesforce/code";

/// Public routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .add(
            Operation::new(
                "get",
                CALLBACK_PATH,
                "oauth",
                "Salesforce OAuth callback (browser redirect)",
            )
            .public()
            .query("code", "authorization code")
            .query("state", "state recorded when the connection was created")
            .bare_response(json!({"type": "string"})),
            get(callback),
        )
        .add(
            Operation::new(
                "get",
                CODE_PATH,
                "oauth",
                "Page where an auth_code is entered",
            )
            .public()
            .bare_response(json!({"type": "string"})),
            get(code_page),
        )
        .add(
            Operation::new(
                "post",
                CODE_PATH,
                "oauth",
                "Submit an auth_code; redirects to Salesforce",
            )
            .public()
            .status(303),
            axum::routing::post(code_submit),
        )
}

/// The callback URL Salesforce must redirect to (register it on the connected app).
pub fn callback_url(state: &AppState) -> String {
    format!(
        "{}{CALLBACK_PATH}",
        state.settings().public_base_url.trim_end_matches('/')
    )
}

/// What a connection response gains while authorization is pending.
#[derive(Debug, Clone, Default)]
pub struct PendingAuthorization {
    /// URL the user opens.
    pub auth_url: Option<String>,
    /// Code the user enters (code mode).
    pub auth_code: Option<String>,
}

fn random_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let bytes = Uuid::new_v4().into_bytes();
    let chars: String = bytes
        .iter()
        .take(8)
        .map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]))
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

fn salesforce_authorize_url(
    connector: &SalesforceConnector,
    config: &SalesforceConfig,
    state_value: &str,
    callback: &str,
) -> Result<String, String> {
    let app = connector.app_for(config).ok_or_else(|| {
        "Ferry has no Salesforce connected app: set FERRY_SALESFORCE_CLIENT_ID and \
         FERRY_SALESFORCE_CLIENT_SECRET (its callback URL must be this server's \
         /oauth/salesforce/callback)"
            .to_string()
    })?;
    let login = login_base_url(&config.domain).map_err(|error| error.to_string())?;
    let url = authorize_url(
        &login,
        &AuthorizeRequest {
            client_id: app.client_id,
            redirect_uri: callback.to_string(),
            state: state_value.to_string(),
            scope: DEFAULT_SCOPE.to_string(),
            prompt: None,
            code_challenge: None,
        },
    )
    .map_err(|error| error.to_string())?;
    Ok(url.to_string())
}

/// Records a pending authorization for a `browser`/`code` connection and returns what the
/// response must carry. `Ok(None)` for other modes.
pub async fn begin_authorization(
    state: &AppState,
    connector: &SalesforceConnector,
    organization_id: Uuid,
    connection_id: Uuid,
    config: &SalesforceConfig,
    redirect_url: Option<String>,
) -> ApiResult<Result<PendingAuthorization, String>> {
    use ferry_connectors::salesforce::ConnectMode;
    let code_mode = match config.connect_mode {
        ConnectMode::Browser => false,
        ConnectMode::Code => true,
        _ => return Ok(Ok(PendingAuthorization::default())),
    };
    let state_value = Uuid::new_v4().simple().to_string();
    let auth_url =
        match salesforce_authorize_url(connector, config, &state_value, &callback_url(state)) {
            Ok(url) => url,
            Err(reason) => return Ok(Err(reason)),
        };
    let auth_code = code_mode.then(random_code);
    state
        .store()
        .create_oauth_state(&OAuthState {
            state: state_value,
            organization_id,
            connection_id,
            auth_code: auth_code.clone(),
            redirect_url,
            created_at: ferry_core::time::now_millis(),
            consumed_at: None,
        })
        .await?;
    let auth_url = if code_mode {
        format!(
            "{}{CODE_PATH}",
            state.settings().public_base_url.trim_end_matches('/')
        )
    } else {
        auth_url
    };
    Ok(Ok(PendingAuthorization {
        auth_url: Some(auth_url),
        auth_code,
    }))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title} | Ferry</title></head>\n\
         <body style=\"font-family: sans-serif; max-width: 40em; margin: 3em auto\">\n<h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape_html(title),
    );
    (status, Html(html)).into_response()
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    format!("{url}{separator}{query}")
}

fn redirect(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

async fn callback(State(state): State<AppState>, Query(query): Query<CallbackQuery>) -> Response {
    let invalid = || {
        page(
            StatusCode::BAD_REQUEST,
            "Authorization link invalid",
            "<p>This authorization link is unknown, already used or expired. Start again from \
             the connection in Ferry (update it with <code>reconnect: true</code> for a new link).</p>",
        )
    };
    let Some(state_value) = query.state.as_deref().filter(|s| !s.is_empty()) else {
        return invalid();
    };
    let pending = match state.store().oauth_state(state_value).await {
        Ok(Some(pending)) if pending.usable_at(chrono::Utc::now()) => pending,
        Ok(_) => return invalid(),
        Err(error) => return ApiError::from(error).into_response(),
    };
    match state
        .store()
        .consume_oauth_state(state_value, chrono::Utc::now())
        .await
    {
        Ok(true) => {}
        Ok(false) => return invalid(),
        Err(error) => return ApiError::from(error).into_response(),
    }
    let outcome = match (&query.error, &query.code) {
        (Some(error), _) => Err(format!(
            "Salesforce did not authorize Ferry: {error}{}",
            query
                .error_description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        )),
        (None, Some(code)) if !code.is_empty() => complete(&state, &pending, code).await,
        _ => Err("the callback carried neither a code nor an error".to_string()),
    };
    match outcome {
        Ok(username) => {
            tracing::info!(connection_id = %pending.connection_id, "salesforce connection authorized");
            match &pending.redirect_url {
                Some(url) => redirect(&with_query(
                    url,
                    &[
                        ("connection_id", &pending.connection_id.to_string()),
                        ("status", "healthy"),
                    ],
                )),
                None => page(
                    StatusCode::OK,
                    "Salesforce connected",
                    &format!(
                        "<p>Ferry is authorized as <b>{}</b>. You can close this window.</p>",
                        escape_html(&username)
                    ),
                ),
            }
        }
        Err(reason) => {
            tracing::warn!(connection_id = %pending.connection_id, error = %reason, "salesforce authorization failed");
            if let Err(error) = connections::record_authorization_failure(
                &state,
                pending.organization_id,
                pending.connection_id,
                &reason,
            )
            .await
            {
                tracing::error!(%error, "could not record the authorization failure");
            }
            match &pending.redirect_url {
                Some(url) => redirect(&with_query(
                    url,
                    &[
                        ("connection_id", &pending.connection_id.to_string()),
                        ("status", "error"),
                        ("error", &reason),
                    ],
                )),
                None => page(
                    StatusCode::BAD_REQUEST,
                    "Salesforce authorization failed",
                    &format!("<p>{}</p>", escape_html(&reason)),
                ),
            }
        }
    }
}

/// Exchanges the code, learns the username and stores the tokens. Returns the username.
async fn complete(state: &AppState, pending: &OAuthState, code: &str) -> Result<String, String> {
    let connection = state
        .store()
        .connection(pending.organization_id, pending.connection_id)
        .await
        .map_err(|error| format!("the connection is gone: {error}"))?;
    let connector = state
        .registry()
        .get(&connection.type_id)
        .and_then(|c| c.as_salesforce().cloned())
        .ok_or_else(|| "the connection is not a Salesforce connection".to_string())?;
    let stored = connections::stored_configuration(state, &connection).map_err(|e| e.message)?;
    let config = SalesforceConfig::from_stored(&serde_json::Value::Object(stored.clone()))
        .map_err(|error| format!("stored configuration is invalid: {error}"))?;
    let app = connector
        .app_for(&config)
        .ok_or_else(|| "Ferry has no Salesforce connected app configured".to_string())?;
    let login = login_base_url(&config.domain).map_err(|error| error.to_string())?;
    let http = ferry_salesforce::auth::default_http_client(std::time::Duration::from_secs(30))
        .map_err(|error| error.to_string())?;
    let token = exchange_code(&http, &login, &app, code, &callback_url(state))
        .await
        .map_err(|error| describe_error(&config, &error))?;
    let refresh_token = token
        .refresh_token
        .clone()
        .ok_or_else(|| "Salesforce returned no refresh token: the connected app must allow the refresh_token scope".to_string())?;
    // The connection's own client configuration, now that it has a refresh token.
    let mut authorized = config.clone();
    authorized.oauth_refresh_token = Some(refresh_token.clone());
    let budget = connections::budget_for(state, connection.id, &stored);
    let client_config = connector
        .client_config(&authorized, budget)
        .map_err(|reason| reason.to_string())?;
    let client = SalesforceClient::connect_with_token(client_config, token)
        .await
        .map_err(|error| describe_error(&config, &error))?;
    let info = client
        .userinfo()
        .await
        .map_err(|error| describe_error(&config, &error))?;
    let username = info.username().unwrap_or_default().to_string();
    connections::record_authorization(
        state,
        pending.organization_id,
        pending.connection_id,
        refresh_token.expose(),
        &username,
    )
    .await
    .map_err(|error| error.message)?;
    Ok(username)
}

async fn code_page() -> Response {
    page(
        StatusCode::OK,
        "Authorize a Salesforce connection",
        &format!(
            "<p>Enter the <code>auth_code</code> Ferry gave you when the connection was created.</p>\n\
             <form method=\"POST\" action=\"{CODE_PATH}\">\n\
             <input name=\"auth_code\" autocomplete=\"off\" placeholder=\"ABCD-EFGH\" required>\n\
             <button type=\"submit\">Continue to Salesforce</button>\n</form>"
        ),
    )
}

#[derive(Debug, Deserialize)]
struct CodeForm {
    auth_code: String,
}

async fn code_submit(State(state): State<AppState>, Form(form): Form<CodeForm>) -> Response {
    let code = form.auth_code.trim().to_ascii_uppercase();
    let pending = match state.store().oauth_state_by_code(&code).await {
        Ok(Some(pending)) if pending.usable_at(chrono::Utc::now()) => pending,
        Ok(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Unknown code",
                "<p>That code is unknown, already used or expired. Check it, or update the \
                 connection with <code>reconnect: true</code> for a new one.</p>",
            );
        }
        Err(error) => return ApiError::from(error).into_response(),
    };
    match authorize_redirect_for(&state, &pending).await {
        Ok(url) => redirect(&url),
        Err(reason) => page(
            StatusCode::BAD_REQUEST,
            "Cannot continue",
            &format!("<p>{}</p>", escape_html(&reason)),
        ),
    }
}

async fn authorize_redirect_for(state: &AppState, pending: &OAuthState) -> Result<String, String> {
    let connection = state
        .store()
        .connection(pending.organization_id, pending.connection_id)
        .await
        .map_err(|error| error.to_string())?;
    let connector = state
        .registry()
        .get(&connection.type_id)
        .and_then(|c| c.as_salesforce().cloned())
        .ok_or_else(|| "not a Salesforce connection".to_string())?;
    let stored = connections::stored_configuration(state, &connection).map_err(|e| e.message)?;
    let config = SalesforceConfig::from_stored(&serde_json::Value::Object(stored))
        .map_err(|error| error.to_string())?;
    salesforce_authorize_url(&connector, &config, &pending.state, &callback_url(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_readable() {
        let code = random_code();
        assert_eq!(code.len(), 9);
        assert_eq!(&code[4..5], "-");
        assert!(
            code.chars()
                .all(|c| c == '-' || c.is_ascii_uppercase() || c.is_ascii_digit())
        );
        assert_ne!(random_code(), random_code());
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<b>\"x\"</b>"),
            "&lt;b&gt;&quot;x&quot;&lt;/b&gt;"
        );
    }

    #[test]
    fn redirect_urls_get_query_pairs() {
        assert_eq!(
            with_query("https://a/b", &[("x", "1 2")]),
            "https://a/b?x=1+2"
        );
        assert_eq!(
            with_query("https://a/b?y=0", &[("x", "1")]),
            "https://a/b?y=0&x=1"
        );
    }
}
