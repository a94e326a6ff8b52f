//! The daily API budget of a connection: calls are reserved atomically against a rolling
//! window, so every Ferry process sharing the store stays under the cap together.
//!
//! A reservation locks the connection's row for the duration of a short transaction
//! (PostgreSQL row lock; SQLite's single writer), sums the calls in the window and records
//! the new ones only if they fit.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, for_each_backend};

/// Outcome of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Whether the calls were reserved.
    pub granted: bool,
    /// Calls in the window before this reservation.
    pub used: i64,
}

/// Atomic budget reservations.
#[async_trait]
pub trait ApiUsageStore {
    /// Reserves `calls` calls at `at` on the connection when the calls made since
    /// `window_start` plus `calls` do not exceed `cap` (no cap: always granted).
    async fn reserve_api_calls(
        &self,
        connection_id: Uuid,
        at: DateTime<Utc>,
        calls: i64,
        cap: Option<i64>,
        window_start: DateTime<Utc>,
    ) -> Result<Reservation>;
}

fn bucket(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis() - at.timestamp_millis().rem_euclid(60_000)
}

macro_rules! impl_api_usage {
    ($store:ty) => {
        #[async_trait]
        impl ApiUsageStore for $store {
            async fn reserve_api_calls(
                &self,
                connection_id: Uuid,
                at: DateTime<Utc>,
                calls: i64,
                cap: Option<i64>,
                window_start: DateTime<Utc>,
            ) -> Result<Reservation> {
                let id = connection_id.to_string();
                let mut tx = self.begin_write().await?;
                // Serialises reservations on this connection across processes.
                sqlx::query("UPDATE connections SET updated_at = updated_at WHERE id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                let used: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(SUM(calls) AS BIGINT) FROM connection_api_calls \
                     WHERE connection_id = $1 AND bucket_start >= $2",
                )
                .bind(&id)
                .bind(bucket(window_start))
                .fetch_one(&mut *tx)
                .await?;
                let used = used.unwrap_or(0);
                if let Some(cap) = cap
                    && used + calls > cap
                {
                    tx.rollback().await?;
                    return Ok(Reservation {
                        granted: false,
                        used,
                    });
                }
                sqlx::query(
                    "INSERT INTO connection_api_calls (connection_id, bucket_start, calls) \
                     VALUES ($1, $2, $3) ON CONFLICT (connection_id, bucket_start) \
                     DO UPDATE SET calls = connection_api_calls.calls + excluded.calls",
                )
                .bind(&id)
                .bind(bucket(at))
                .bind(calls)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Reservation {
                    granted: true,
                    used,
                })
            }
        }
    };
}
for_each_backend!(impl_api_usage);
