//! Connection Proxy bookkeeping in the store, so every Ferry process sharing it enforces
//! one per-minute rate limit per connection and reports the same 24-hour statistics.
//!
//! One row per connection and second with calls: admitted calls and the status classes of
//! their answers. The rate limit is a sliding window over the last 60 seconds, decided
//! inside a transaction that locks the connection's row (as budget reservations do), so
//! concurrent callers in any process cannot both take the last slot.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::{Result, for_each_backend, from_millis};

/// A call the rate limit let through; [`ProxyCallStore::record_proxy_status`] files its
/// answer in the same minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyAdmission {
    /// Start of the second (epoch ms) the call was counted in.
    pub bucket_start: i64,
}

/// Proxy statistics over a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Calls admitted.
    pub calls: i64,
    /// Answers with a 2xx status.
    pub ok: i64,
    /// Answers with a 4xx status.
    pub client_errors: i64,
    /// Answers with a 5xx status.
    pub server_errors: i64,
    /// The last admitted call.
    pub last_at: Option<DateTime<Utc>>,
}

/// Shared proxy rate limiting and statistics.
#[async_trait]
pub trait ProxyCallStore {
    /// Counts a call at `at` unless `per_minute` calls were already admitted for the
    /// connection in the 60 seconds before it (then `None`: refuse it).
    async fn admit_proxy_call(
        &self,
        connection_id: Uuid,
        at: DateTime<Utc>,
        per_minute: i64,
    ) -> Result<Option<ProxyAdmission>>;
    /// Files the HTTP status Salesforce answered an admitted call with.
    async fn record_proxy_status(
        &self,
        connection_id: Uuid,
        admission: ProxyAdmission,
        status: u16,
    ) -> Result<()>;
    /// Statistics of the calls admitted since `since`.
    async fn proxy_stats(&self, connection_id: Uuid, since: DateTime<Utc>) -> Result<ProxyStats>;
}

/// Rows are kept this long (the statistics cover 24 hours).
const KEEP_MILLIS: i64 = 25 * 3_600_000;

fn bucket(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis() - at.timestamp_millis().rem_euclid(1_000)
}

macro_rules! impl_proxy_calls {
    ($store:ty) => {
        #[async_trait]
        impl ProxyCallStore for $store {
            async fn admit_proxy_call(
                &self,
                connection_id: Uuid,
                at: DateTime<Utc>,
                per_minute: i64,
            ) -> Result<Option<ProxyAdmission>> {
                let id = connection_id.to_string();
                let bucket_start = bucket(at);
                let mut tx = self.begin_write().await?;
                // Serialises admissions on this connection across processes.
                sqlx::query("UPDATE connections SET updated_at = updated_at WHERE id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                let recent: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(SUM(calls) AS BIGINT) FROM proxy_calls \
                     WHERE connection_id = $1 AND bucket_start > $2",
                )
                .bind(&id)
                .bind(bucket_start - 60_000)
                .fetch_one(&mut *tx)
                .await?;
                if recent.unwrap_or(0) >= per_minute {
                    tx.rollback().await?;
                    return Ok(None);
                }
                sqlx::query(
                    "INSERT INTO proxy_calls (connection_id, bucket_start, calls, last_at) \
                     VALUES ($1, $2, 1, $3) ON CONFLICT (connection_id, bucket_start) \
                     DO UPDATE SET calls = proxy_calls.calls + 1, last_at = excluded.last_at",
                )
                .bind(&id)
                .bind(bucket_start)
                .bind(at.timestamp_millis())
                .execute(&mut *tx)
                .await?;
                if recent.is_none() {
                    // The first call after a quiet minute: drop what the statistics no
                    // longer cover.
                    sqlx::query(
                        "DELETE FROM proxy_calls WHERE connection_id = $1 AND bucket_start < $2",
                    )
                    .bind(&id)
                    .bind(bucket_start - KEEP_MILLIS)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(Some(ProxyAdmission { bucket_start }))
            }

            async fn record_proxy_status(
                &self,
                connection_id: Uuid,
                admission: ProxyAdmission,
                status: u16,
            ) -> Result<()> {
                let column = match status / 100 {
                    2 => "ok",
                    4 => "client_errors",
                    5 => "server_errors",
                    _ => return Ok(()),
                };
                sqlx::query(&format!(
                    "UPDATE proxy_calls SET {column} = {column} + 1 \
                     WHERE connection_id = $1 AND bucket_start = $2"
                ))
                .bind(connection_id.to_string())
                .bind(admission.bucket_start)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn proxy_stats(
                &self,
                connection_id: Uuid,
                since: DateTime<Utc>,
            ) -> Result<ProxyStats> {
                let row = sqlx::query(
                    "SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) AS calls, \
                     CAST(COALESCE(SUM(ok), 0) AS BIGINT) AS ok, \
                     CAST(COALESCE(SUM(client_errors), 0) AS BIGINT) AS client_errors, \
                     CAST(COALESCE(SUM(server_errors), 0) AS BIGINT) AS server_errors, \
                     MAX(last_at) AS last_at \
                     FROM proxy_calls WHERE connection_id = $1 AND bucket_start >= $2",
                )
                .bind(connection_id.to_string())
                .bind(bucket(since))
                .fetch_one(&self.pool)
                .await?;
                let last: Option<i64> = row.try_get("last_at")?;
                Ok(ProxyStats {
                    calls: row.try_get("calls")?,
                    ok: row.try_get("ok")?,
                    client_errors: row.try_get("client_errors")?,
                    server_errors: row.try_get("server_errors")?,
                    last_at: last.map(from_millis),
                })
            }
        }
    };
}
for_each_backend!(impl_proxy_calls);
