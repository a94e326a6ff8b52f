//! Events (what happened: sync runs started, completed, failed, ...) and the organization's
//! webhook that receives them. Events are kept [`EVENT_RETENTION`]; a webhook's secret is
//! stored encrypted by the caller (an opaque blob here).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::{Result, StoreError, for_each_backend, from_millis, map_unique};

/// How long events are kept.
pub const EVENT_RETENTION: Duration = Duration::from_secs(48 * 3600);

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Event type, e.g. `sync.completed`.
    pub event_type: String,
    /// Payload.
    pub payload: Value,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// Filters for listing events.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this type.
    pub event_type: Option<String>,
    /// Only events after this time.
    pub starting_after: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub ending_before: Option<DateTime<Utc>>,
    /// At most this many (newest first).
    pub limit: i64,
}

/// An organization's webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Webhook id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Where events are POSTed.
    pub endpoint: String,
    /// Encrypted signing secret.
    pub secret: Vec<u8>,
    /// Whether deliveries are paused (events are dropped meanwhile).
    pub disabled: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Event and webhook persistence.
#[async_trait]
pub trait EventStore {
    /// Records an event.
    async fn insert_event(&self, event: &Event) -> Result<()>;
    /// Lists events of an organization, newest first.
    async fn list_events(&self, organization_id: Uuid, filter: &EventFilter) -> Result<Vec<Event>>;
    /// Deletes events created before `before`.
    async fn purge_events(&self, before: DateTime<Utc>) -> Result<u64>;
    /// Creates the organization's webhook ([`StoreError::AlreadyExists`] when it has one).
    async fn create_webhook(&self, webhook: &Webhook) -> Result<()>;
    /// Every webhook of the organization (zero or one).
    async fn list_webhooks(&self, organization_id: Uuid) -> Result<Vec<Webhook>>;
    /// One webhook.
    async fn webhook(&self, organization_id: Uuid, id: Uuid) -> Result<Webhook>;
    /// Replaces endpoint, secret and disabled flag.
    async fn update_webhook(&self, webhook: &Webhook) -> Result<()>;
    /// Deletes a webhook.
    async fn delete_webhook(&self, organization_id: Uuid, id: Uuid) -> Result<()>;
}

trait EventRows {
    fn to_event(&self) -> Result<Event>;
    fn to_webhook(&self) -> Result<Webhook>;
}

fn uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

macro_rules! impl_event_rows {
    ($row:ty) => {
        impl EventRows for $row {
            fn to_event(&self) -> Result<Event> {
                let payload: String = self.try_get("payload")?;
                Ok(Event {
                    id: uuid(&self.try_get::<String, _>("id")?)?,
                    organization_id: uuid(&self.try_get::<String, _>("organization_id")?)?,
                    event_type: self.try_get("type")?,
                    payload: serde_json::from_str(&payload)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    created_at: from_millis(self.try_get("created_at")?),
                })
            }

            fn to_webhook(&self) -> Result<Webhook> {
                Ok(Webhook {
                    id: uuid(&self.try_get::<String, _>("id")?)?,
                    organization_id: uuid(&self.try_get::<String, _>("organization_id")?)?,
                    endpoint: self.try_get("endpoint")?,
                    secret: self.try_get("secret")?,
                    disabled: self.try_get("disabled")?,
                    created_at: from_millis(self.try_get("created_at")?),
                })
            }
        }
    };
}
impl_event_rows!(sqlx::sqlite::SqliteRow);
impl_event_rows!(sqlx::postgres::PgRow);

fn webhook_not_found() -> StoreError {
    StoreError::NotFound { entity: "webhook" }
}

macro_rules! impl_events {
    ($store:ty) => {
        #[async_trait]
        impl EventStore for $store {
            async fn insert_event(&self, event: &Event) -> Result<()> {
                sqlx::query(
                    "INSERT INTO events (id, organization_id, type, payload, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(event.id.to_string())
                .bind(event.organization_id.to_string())
                .bind(&event.event_type)
                .bind(event.payload.to_string())
                .bind(event.created_at.timestamp_millis())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_events(
                &self,
                organization_id: Uuid,
                filter: &EventFilter,
            ) -> Result<Vec<Event>> {
                let rows = sqlx::query(
                    "SELECT id, organization_id, type, payload, created_at FROM events \
                     WHERE organization_id = $1 AND ($2 IS NULL OR type = $2) \
                     AND created_at > $3 AND created_at < $4 \
                     ORDER BY created_at DESC, id DESC LIMIT $5",
                )
                .bind(organization_id.to_string())
                .bind(filter.event_type.as_deref())
                .bind(filter.starting_after.map_or(i64::MIN, |t| t.timestamp_millis()))
                .bind(filter.ending_before.map_or(i64::MAX, |t| t.timestamp_millis()))
                .bind(filter.limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(EventRows::to_event).collect()
            }

            async fn purge_events(&self, before: DateTime<Utc>) -> Result<u64> {
                let result = sqlx::query("DELETE FROM events WHERE created_at < $1")
                    .bind(before.timestamp_millis())
                    .execute(&self.pool)
                    .await?;
                Ok(result.rows_affected())
            }

            async fn create_webhook(&self, webhook: &Webhook) -> Result<()> {
                sqlx::query(
                    "INSERT INTO webhooks (id, organization_id, endpoint, secret, disabled, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                )
                .bind(webhook.id.to_string())
                .bind(webhook.organization_id.to_string())
                .bind(&webhook.endpoint)
                .bind(&webhook.secret)
                .bind(webhook.disabled)
                .bind(webhook.created_at.timestamp_millis())
                .execute(&self.pool)
                .await
                .map_err(map_unique("webhook"))?;
                Ok(())
            }

            async fn list_webhooks(&self, organization_id: Uuid) -> Result<Vec<Webhook>> {
                let rows = sqlx::query(
                    "SELECT id, organization_id, endpoint, secret, disabled, created_at \
                     FROM webhooks WHERE organization_id = $1",
                )
                .bind(organization_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(EventRows::to_webhook).collect()
            }

            async fn webhook(&self, organization_id: Uuid, id: Uuid) -> Result<Webhook> {
                let row = sqlx::query(
                    "SELECT id, organization_id, endpoint, secret, disabled, created_at \
                     FROM webhooks WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(EventRows::to_webhook).transpose()?.ok_or_else(webhook_not_found)
            }

            async fn update_webhook(&self, webhook: &Webhook) -> Result<()> {
                let result = sqlx::query(
                    "UPDATE webhooks SET endpoint = $3, secret = $4, disabled = $5, updated_at = $6 \
                     WHERE organization_id = $1 AND id = $2",
                )
                .bind(webhook.organization_id.to_string())
                .bind(webhook.id.to_string())
                .bind(&webhook.endpoint)
                .bind(&webhook.secret)
                .bind(webhook.disabled)
                .bind(Utc::now().timestamp_millis())
                .execute(&self.pool)
                .await?;
                if result.rows_affected() == 0 {
                    return Err(webhook_not_found());
                }
                Ok(())
            }

            async fn delete_webhook(&self, organization_id: Uuid, id: Uuid) -> Result<()> {
                let result = sqlx::query("DELETE FROM webhooks WHERE organization_id = $1 AND id = $2")
                    .bind(organization_id.to_string())
                    .bind(id.to_string())
                    .execute(&self.pool)
                    .await?;
                if result.rows_affected() == 0 {
                    return Err(webhook_not_found());
                }
                Ok(())
            }
        }
    };
}
for_each_backend!(impl_events);
