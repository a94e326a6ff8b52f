//! Pending OAuth authorizations.
//!
//! Creating or reconnecting an OAuth connection (Salesforce `browser` / `code` modes) records
//! a random `state` bound to the connection; the provider's redirect to Ferry's callback
//! carries it back. In `code` mode a short `auth_code` is also recorded: the user types it on
//! Ferry's authorization page, which resolves it to the same state. A state is single-use
//! and expires after [`STATE_TTL`].

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::{Result, StoreError, for_each_backend, from_millis};

/// How long a pending authorization stays valid.
pub const STATE_TTL: Duration = Duration::from_secs(3600);

/// A pending authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    /// The opaque state value.
    pub state: String,
    /// Organization of the connection.
    pub organization_id: Uuid,
    /// The connection being authorized.
    pub connection_id: Uuid,
    /// Code the user types (code mode).
    pub auth_code: Option<String>,
    /// Where to send the browser afterwards.
    pub redirect_url: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it was used, if it was.
    pub consumed_at: Option<DateTime<Utc>>,
}

impl OAuthState {
    /// Whether the state can still be used at `now`.
    pub fn usable_at(&self, now: DateTime<Utc>) -> bool {
        let ttl =
            chrono::Duration::from_std(STATE_TTL).unwrap_or_else(|_| chrono::Duration::hours(1));
        self.consumed_at.is_none() && now - self.created_at < ttl
    }
}

/// OAuth state persistence.
#[async_trait]
pub trait OAuthStateStore {
    /// Records a pending authorization.
    async fn create_oauth_state(&self, state: &OAuthState) -> Result<()>;
    /// Looks a state up.
    async fn oauth_state(&self, state: &str) -> Result<Option<OAuthState>>;
    /// Looks a user-entered code up.
    async fn oauth_state_by_code(&self, auth_code: &str) -> Result<Option<OAuthState>>;
    /// Marks a state used; false when it was already used (single use).
    async fn consume_oauth_state(&self, state: &str, at: DateTime<Utc>) -> Result<bool>;
}

trait StateRow {
    fn to_state(&self) -> Result<OAuthState>;
}

macro_rules! impl_state_row {
    ($row:ty) => {
        impl StateRow for $row {
            fn to_state(&self) -> Result<OAuthState> {
                let parse =
                    |s: String| Uuid::parse_str(&s).map_err(|e| StoreError::Corrupt(e.to_string()));
                Ok(OAuthState {
                    state: self.try_get("state")?,
                    organization_id: parse(self.try_get("organization_id")?)?,
                    connection_id: parse(self.try_get("connection_id")?)?,
                    auth_code: self.try_get("auth_code")?,
                    redirect_url: self.try_get("redirect_url")?,
                    created_at: from_millis(self.try_get("created_at")?),
                    consumed_at: self
                        .try_get::<Option<i64>, _>("consumed_at")?
                        .map(from_millis),
                })
            }
        }
    };
}
impl_state_row!(sqlx::sqlite::SqliteRow);
impl_state_row!(sqlx::postgres::PgRow);

const COLUMNS: &str =
    "state, organization_id, connection_id, auth_code, redirect_url, created_at, consumed_at";

macro_rules! impl_oauth {
    ($store:ty) => {
        #[async_trait]
        impl OAuthStateStore for $store {
            async fn create_oauth_state(&self, state: &OAuthState) -> Result<()> {
                sqlx::query(&format!(
                    "INSERT INTO oauth_states ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ))
                .bind(&state.state)
                .bind(state.organization_id.to_string())
                .bind(state.connection_id.to_string())
                .bind(&state.auth_code)
                .bind(&state.redirect_url)
                .bind(state.created_at.timestamp_millis())
                .bind(state.consumed_at.map(|at| at.timestamp_millis()))
                .execute(&self.pool)
                .await
                .map_err(crate::map_unique("oauth state"))?;
                Ok(())
            }

            async fn oauth_state(&self, state: &str) -> Result<Option<OAuthState>> {
                let row = sqlx::query(&format!("SELECT {COLUMNS} FROM oauth_states WHERE state = $1"))
                    .bind(state)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(StateRow::to_state).transpose()
            }

            async fn oauth_state_by_code(&self, auth_code: &str) -> Result<Option<OAuthState>> {
                let row = sqlx::query(&format!("SELECT {COLUMNS} FROM oauth_states WHERE auth_code = $1"))
                    .bind(auth_code)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(StateRow::to_state).transpose()
            }

            async fn consume_oauth_state(&self, state: &str, at: DateTime<Utc>) -> Result<bool> {
                let result = sqlx::query(
                    "UPDATE oauth_states SET consumed_at = $2 WHERE state = $1 AND consumed_at IS NULL",
                )
                .bind(state)
                .bind(at.timestamp_millis())
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }
        }
    };
}
for_each_backend!(impl_oauth);
