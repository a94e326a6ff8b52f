//! `ferry-salesforce`: Ferry's Salesforce API client. It shares no code with the emulator
//! (`ferry-salesforce-emulator`); the two implementations of the wire protocol check each
//! other in this crate's integration tests. Wire details: `spec/salesforce-api.md`.
//!
//! # Layout
//! - [`auth`]: login URLs, the authorize URL, OAuth grants (authorization code, refresh
//!   token, client credentials, password), token responses, userinfo.
//! - [`client`]: [`SalesforceClient`] and [`ClientConfig`]: session state, single-flight
//!   token refresh, API version negotiation, and the one request path (budget → send →
//!   `Sforce-Limit-Info` → refresh/retry).
//! - [`budget`]: the [`CallBudget`] hook consulted before every API call,
//!   [`InMemoryBudget`], `Sforce-Limit-Info` parsing and the org-usage floor.
//! - [`retry`]: [`RetryPolicy`], jittered exponential backoff.
//! - [`error`]: [`SalesforceError`] and tolerant parsing of every Salesforce error shape.
//! - [`describe`]: describeGlobal/describe (REST and Tooling), cached per client.
//! - [`query`]: SOQL queries streamed page by page (REST, queryAll, Tooling) and safe
//!   `IN`-list building through `ferry-soql`.
//! - [`sobjects`]: single-record CRUD, upsert, sObject Collections, `/limits`,
//!   `updated`/`deleted` feeds.
//! - [`raw`]: pass-through requests with the connection's credentials (Connection Proxy).
//! - [`bulk2`]: Bulk API 2.0 ingest and query jobs (results streamed by locator).
//! - [`bulk1`]: Bulk API 1.0 jobs and batches.
//! - [`datetime`]: Salesforce datetime parsing/formatting.
//! - [`xml`]: the small XML tree used by Bulk 1.0.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), ferry_salesforce::SalesforceError> {
//! use ferry_salesforce::{ClientConfig, Credentials, OAuthApp, QueryScope, SalesforceClient, auth};
//! use futures_util::TryStreamExt;
//!
//! let login = auth::login_base_url("http://127.0.0.1:5200")?;
//! let app = OAuthApp::new("ferry-emulator", "ferry-emulator-secret");
//! let config = ClientConfig::new(login, app, Credentials::ClientCredentials);
//! let client = SalesforceClient::connect(config).await?;
//! let mut pages = std::pin::pin!(client.query_pages("SELECT Id, Name FROM Account", QueryScope::Live));
//! while let Some(page) = pages.try_next().await? {
//!     println!("{} records", page.records.len());
//! }
//! # Ok(()) }
//! ```

pub mod auth;
pub mod budget;
pub mod bulk1;
pub mod bulk2;
pub mod client;
pub mod datetime;
pub mod describe;
pub mod error;
pub mod query;
pub mod raw;
pub mod retry;
pub mod sobjects;
pub mod xml;

pub use auth::{AuthorizeRequest, Grant, OAuthApp, TokenResponse, UserInfo};
pub use budget::{BudgetExceeded, BudgetKind, CallBudget, InMemoryBudget, Unlimited};
pub use client::{ClientConfig, Credentials, SalesforceClient, TokenCallback};
pub use describe::{FieldDescribe, GlobalDescribe, SObjectDescribe, SObjectSummary};
pub use error::{ApiError, ApiErrorItem, Result, SalesforceError, TransportKind};
pub use query::{QueryPage, QueryScope, Record};
pub use raw::{RawRequest, RawResponse};
pub use retry::RetryPolicy;
pub use sobjects::{CollectionOptions, Limits, SaveResult, UpsertResult};
