//! Salesforce Bulk jobs a model sync has opened and not yet seen finish (`sync_write_jobs`).
//!
//! A run records a job as soon as Salesforce has given it an id and forgets it once its
//! results are read. Jobs still recorded when a run starts were left by a run that died;
//! the engine settles them (waits for the closed ones, aborts the open ones) first.

use async_trait::async_trait;
use sqlx::Row as _;
use uuid::Uuid;

use crate::{Result, for_each_backend, map_missing_parent};

/// A recorded Bulk job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteJob {
    /// Salesforce's job id.
    pub job_id: String,
    /// `bulk1` or `bulk2`.
    pub api: String,
}

/// The Bulk jobs of model syncs.
#[async_trait]
pub trait WriteJobStore {
    /// Records a job the sync opened.
    async fn record_write_job(&self, sync_id: Uuid, api: &str, job_id: &str) -> Result<()>;
    /// Forgets a job whose end the sync has seen (no error when it is not recorded).
    async fn forget_write_job(&self, sync_id: Uuid, job_id: &str) -> Result<()>;
    /// The jobs recorded for the sync, oldest first.
    async fn write_jobs(&self, sync_id: Uuid) -> Result<Vec<WriteJob>>;
}

macro_rules! impl_write_jobs {
    ($store:ty) => {
        #[async_trait]
        impl WriteJobStore for $store {
            async fn record_write_job(&self, sync_id: Uuid, api: &str, job_id: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO sync_write_jobs (sync_id, job_id, api, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (sync_id, job_id) DO NOTHING",
                )
                .bind(sync_id.to_string())
                .bind(job_id)
                .bind(api)
                .bind(ferry_core::time::now_millis().timestamp_millis())
                .execute(&self.pool)
                .await
                .map_err(map_missing_parent("sync"))?;
                Ok(())
            }

            async fn forget_write_job(&self, sync_id: Uuid, job_id: &str) -> Result<()> {
                sqlx::query("DELETE FROM sync_write_jobs WHERE sync_id = $1 AND job_id = $2")
                    .bind(sync_id.to_string())
                    .bind(job_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn write_jobs(&self, sync_id: Uuid) -> Result<Vec<WriteJob>> {
                let rows = sqlx::query(
                    "SELECT job_id, api FROM sync_write_jobs WHERE sync_id = $1 \
                     ORDER BY created_at, job_id",
                )
                .bind(sync_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(WriteJob {
                            job_id: row.try_get("job_id")?,
                            api: row.try_get("api")?,
                        })
                    })
                    .collect()
            }
        }
    };
}
for_each_backend!(impl_write_jobs);
