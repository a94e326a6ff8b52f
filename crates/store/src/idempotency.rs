//! `Idempotency-Key` records.
//!
//! The first request carrying a key inserts a record in state `in_flight`; when it finishes,
//! its response (status, content type, body — errors included) is stored and the record
//! becomes `done`. Later requests with the same key get that response replayed and are never
//! executed again. A concurrent request while the first is in flight is told so (the API
//! answers 409). A key reused with a different method, path or body is a mismatch. Records
//! are kept at least [`RETENTION`]; an in-flight record older than [`STALE_IN_FLIGHT`] (its
//! process died) may be taken over.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::{Result, for_each_backend};

/// How long outcomes are kept.
pub const RETENTION: Duration = Duration::from_secs(48 * 3600);

/// After this long an in-flight record is considered abandoned.
pub const STALE_IN_FLIGHT: Duration = Duration::from_secs(10 * 60);

/// A response stored for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Outcome of claiming a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// The caller owns the key and must execute the request, then complete or abandon it.
    Started,
    /// Another request with this key is executing.
    InFlight,
    /// The key was used before; replay this response.
    Completed(StoredResponse),
    /// The key was used before for a different request.
    Mismatch,
}

/// Idempotency record persistence.
#[async_trait]
pub trait IdempotencyStore {
    /// Claims `key` for a request whose method, path and body hash to `fingerprint`.
    async fn begin_idempotent(
        &self,
        organization_id: Uuid,
        key: &str,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<IdempotencyBegin>;
    /// Stores the outcome of a request that began with [`IdempotencyBegin::Started`].
    async fn complete_idempotent(
        &self,
        organization_id: Uuid,
        key: &str,
        response: &StoredResponse,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Releases a key whose request produced no outcome (so a retry executes it).
    async fn abandon_idempotent(&self, organization_id: Uuid, key: &str) -> Result<()>;
    /// Deletes records created before `before`; returns how many.
    async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64>;
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

macro_rules! impl_idempotency {
    ($store:ty) => {
        #[async_trait]
        impl IdempotencyStore for $store {
            async fn begin_idempotent(
                &self,
                organization_id: Uuid,
                key: &str,
                fingerprint: &str,
                now: DateTime<Utc>,
            ) -> Result<IdempotencyBegin> {
                let now = now.timestamp_millis();
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_records \
                     (organization_id, idempotency_key, fingerprint, state, created_at) \
                     VALUES ($1, $2, $3, 'in_flight', $4) ON CONFLICT DO NOTHING",
                )
                .bind(organization_id.to_string())
                .bind(key)
                .bind(fingerprint)
                .bind(now)
                .execute(&self.pool)
                .await?;
                if inserted.rows_affected() == 1 {
                    return Ok(IdempotencyBegin::Started);
                }
                let row = sqlx::query(
                    "SELECT fingerprint, state, response_status, response_content_type, \
                     response_body, created_at FROM idempotency_records \
                     WHERE organization_id = $1 AND idempotency_key = $2",
                )
                .bind(organization_id.to_string())
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                let Some(row) = row else {
                    // Purged between the insert and the read: claim it again.
                    return self.begin_idempotent(
                        organization_id,
                        key,
                        fingerprint,
                        crate::from_millis(now),
                    ).await;
                };
                let stored_fingerprint: String = row.try_get("fingerprint")?;
                if stored_fingerprint != fingerprint {
                    return Ok(IdempotencyBegin::Mismatch);
                }
                let state: String = row.try_get("state")?;
                if state == "done" {
                    let status: Option<i32> = row.try_get("response_status")?;
                    return Ok(IdempotencyBegin::Completed(StoredResponse {
                        status: status.and_then(|s| u16::try_from(s).ok()).unwrap_or(500),
                        content_type: row.try_get("response_content_type")?,
                        body: row.try_get::<Option<Vec<u8>>, _>("response_body")?.unwrap_or_default(),
                    }));
                }
                let created_at: i64 = row.try_get("created_at")?;
                if now - created_at > millis(STALE_IN_FLIGHT) {
                    let taken = sqlx::query(
                        "UPDATE idempotency_records SET created_at = $3 \
                         WHERE organization_id = $1 AND idempotency_key = $2 \
                         AND state = 'in_flight' AND created_at = $4",
                    )
                    .bind(organization_id.to_string())
                    .bind(key)
                    .bind(now)
                    .bind(created_at)
                    .execute(&self.pool)
                    .await?;
                    if taken.rows_affected() == 1 {
                        return Ok(IdempotencyBegin::Started);
                    }
                }
                Ok(IdempotencyBegin::InFlight)
            }

            async fn complete_idempotent(
                &self,
                organization_id: Uuid,
                key: &str,
                response: &StoredResponse,
                now: DateTime<Utc>,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE idempotency_records SET state = 'done', response_status = $3, \
                     response_content_type = $4, response_body = $5, completed_at = $6 \
                     WHERE organization_id = $1 AND idempotency_key = $2",
                )
                .bind(organization_id.to_string())
                .bind(key)
                .bind(i32::from(response.status))
                .bind(&response.content_type)
                .bind(&response.body)
                .bind(now.timestamp_millis())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn abandon_idempotent(&self, organization_id: Uuid, key: &str) -> Result<()> {
                sqlx::query(
                    "DELETE FROM idempotency_records \
                     WHERE organization_id = $1 AND idempotency_key = $2 AND state = 'in_flight'",
                )
                .bind(organization_id.to_string())
                .bind(key)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn purge_idempotency(&self, before: DateTime<Utc>) -> Result<u64> {
                let result = sqlx::query("DELETE FROM idempotency_records WHERE created_at < $1")
                    .bind(before.timestamp_millis())
                    .execute(&self.pool)
                    .await?;
                Ok(result.rows_affected())
            }
        }
    };
}
for_each_backend!(impl_idempotency);
