//! Connections. The store keeps the non-secret part of a configuration as JSON and the
//! secret part as an opaque encrypted blob (see [`crate::secrets`]); it never sees a secret
//! in plaintext.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::{Result, StoreError, for_each_backend, from_millis};

/// A stored connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// Public id.
    pub id: Uuid,
    /// Owning organization.
    pub organization_id: Uuid,
    /// Display name.
    pub name: String,
    /// Connection type id (`salesforce`, `postgresql`, ...).
    pub type_id: String,
    /// Configuration without its secret values.
    pub configuration: Value,
    /// Encrypted secret values (a JSON object once decrypted), if any.
    pub secrets: Option<Vec<u8>>,
    /// `healthy`, `unauthorized`, `failed`, ...
    pub status: String,
    /// Why the connection is not healthy.
    pub status_error: Option<String>,
    /// Health-check interval override.
    pub healthcheck_interval: Option<String>,
    /// Permission policy ids.
    pub policies: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Creator (API key id).
    pub created_by: Option<String>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
    /// Last updater (API key id).
    pub updated_by: Option<String>,
}

/// The writable part of a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionWrite {
    /// Display name.
    pub name: String,
    /// Connection type id.
    pub type_id: String,
    /// Configuration without secrets.
    pub configuration: Value,
    /// Encrypted secrets.
    pub secrets: Option<Vec<u8>>,
    /// Status after validation.
    pub status: String,
    /// Why not healthy.
    pub status_error: Option<String>,
    /// Health-check interval override.
    pub healthcheck_interval: Option<String>,
    /// Permission policy ids.
    pub policies: Vec<String>,
    /// Who writes (API key id).
    pub actor: Option<String>,
}

/// Something that uses a connection and would break if it were deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionDependent {
    /// `model`, `sync`, `bulk_sync`.
    pub kind: String,
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A connection and when its periodic health check last ran.
#[derive(Debug, Clone)]
pub struct HealthCheckCandidate {
    /// The connection.
    pub connection: Connection,
    /// The last periodic check (`None`: never; the create/update check counts).
    pub last_checked_at: Option<DateTime<Utc>>,
}

/// Connection persistence. Every call is scoped to an organization: an id from another
/// organization behaves exactly like an unknown id.
#[async_trait]
pub trait ConnectionStore {
    /// Inserts a connection.
    async fn create_connection(
        &self,
        organization_id: Uuid,
        write: ConnectionWrite,
    ) -> Result<Connection>;
    /// Fetches one connection.
    async fn connection(&self, organization_id: Uuid, id: Uuid) -> Result<Connection>;
    /// Every connection of the organization, oldest first.
    async fn list_connections(&self, organization_id: Uuid) -> Result<Vec<Connection>>;
    /// Replaces a connection's writable fields.
    async fn update_connection(
        &self,
        organization_id: Uuid,
        id: Uuid,
        write: ConnectionWrite,
    ) -> Result<Connection>;
    /// Deletes a connection (and its dependents' links).
    async fn delete_connection(&self, organization_id: Uuid, id: Uuid) -> Result<()>;
    /// Resources that use the connection.
    async fn connection_dependents(&self, id: Uuid) -> Result<Vec<ConnectionDependent>>;
    /// Records that a resource uses a connection.
    async fn add_connection_dependent(
        &self,
        connection_id: Uuid,
        dependent: &ConnectionDependent,
    ) -> Result<()>;
    /// Counts `calls` API calls made on the connection at `at` (bucketed per minute).
    async fn record_api_calls(
        &self,
        connection_id: Uuid,
        at: DateTime<Utc>,
        calls: i64,
    ) -> Result<()>;
    /// API calls recorded since `since`.
    async fn api_calls_since(&self, connection_id: Uuid, since: DateTime<Utc>) -> Result<i64>;
    /// Replaces only the encrypted secrets (a refresh token Salesforce rotated), leaving
    /// `updated_at` alone: the connection's configuration did not change.
    async fn replace_connection_secrets(
        &self,
        organization_id: Uuid,
        id: Uuid,
        secrets: Option<Vec<u8>>,
    ) -> Result<()>;
    /// Every connection of every organization with the time its periodic health check last
    /// ran (for the health-check loop; connection counts are small).
    async fn health_check_candidates(&self) -> Result<Vec<HealthCheckCandidate>>;
    /// Claims the periodic check of a connection: succeeds only for the one caller that
    /// still sees `last_checked_at` (so processes sharing a store never check twice).
    async fn claim_health_check(
        &self,
        id: Uuid,
        last_checked_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Records a periodic check's outcome unless the connection changed since
    /// `updated_at` (a newer configuration has its own check). Returns whether it was stored.
    async fn record_connection_health(
        &self,
        id: Uuid,
        updated_at: DateTime<Utc>,
        status: &str,
        status_error: Option<&str>,
    ) -> Result<bool>;
}

const COLUMNS: &str = "id, organization_id, name, type, configuration, secrets, status, \
                       status_error, healthcheck_interval, policies, created_at, created_by, \
                       updated_at, updated_by";

trait ConnectionRow {
    fn to_connection(&self) -> Result<Connection>;
}

macro_rules! impl_connection_row {
    ($row:ty) => {
        impl ConnectionRow for $row {
            fn to_connection(&self) -> Result<Connection> {
                let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
                let id: String = self.try_get("id")?;
                let org: String = self.try_get("organization_id")?;
                let configuration: String = self.try_get("configuration")?;
                let policies: String = self.try_get("policies")?;
                Ok(Connection {
                    id: Uuid::parse_str(&id).map_err(|e| corrupt(&e))?,
                    organization_id: Uuid::parse_str(&org).map_err(|e| corrupt(&e))?,
                    name: self.try_get("name")?,
                    type_id: self.try_get("type")?,
                    configuration: serde_json::from_str(&configuration).map_err(|e| corrupt(&e))?,
                    secrets: self.try_get("secrets")?,
                    status: self.try_get("status")?,
                    status_error: self.try_get("status_error")?,
                    healthcheck_interval: self.try_get("healthcheck_interval")?,
                    policies: serde_json::from_str(&policies).map_err(|e| corrupt(&e))?,
                    created_at: from_millis(self.try_get("created_at")?),
                    created_by: self.try_get("created_by")?,
                    updated_at: from_millis(self.try_get("updated_at")?),
                    updated_by: self.try_get("updated_by")?,
                })
            }
        }
    };
}
impl_connection_row!(sqlx::sqlite::SqliteRow);
impl_connection_row!(sqlx::postgres::PgRow);

fn not_found() -> StoreError {
    StoreError::NotFound {
        entity: "connection",
    }
}

fn json_text(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

macro_rules! impl_connections {
    ($store:ty) => {
        #[async_trait]
        impl ConnectionStore for $store {
            async fn create_connection(
                &self,
                organization_id: Uuid,
                write: ConnectionWrite,
            ) -> Result<Connection> {
                let id = Uuid::new_v4();
                let now = ferry_core::time::now_millis().timestamp_millis();
                sqlx::query(&format!(
                    "INSERT INTO connections ({COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11, $12)"
                ))
                .bind(id.to_string())
                .bind(organization_id.to_string())
                .bind(&write.name)
                .bind(&write.type_id)
                .bind(json_text(&write.configuration)?)
                .bind(&write.secrets)
                .bind(&write.status)
                .bind(&write.status_error)
                .bind(&write.healthcheck_interval)
                .bind(json_text(&write.policies)?)
                .bind(now)
                .bind(&write.actor)
                .execute(&self.pool)
                .await?;
                self.connection(organization_id, id).await
            }

            async fn connection(&self, organization_id: Uuid, id: Uuid) -> Result<Connection> {
                let row = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM connections WHERE organization_id = $1 AND id = $2"
                ))
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(ConnectionRow::to_connection).transpose()?.ok_or_else(not_found)
            }

            async fn list_connections(&self, organization_id: Uuid) -> Result<Vec<Connection>> {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM connections WHERE organization_id = $1 \
                     ORDER BY created_at, id"
                ))
                .bind(organization_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(ConnectionRow::to_connection).collect()
            }

            async fn update_connection(
                &self,
                organization_id: Uuid,
                id: Uuid,
                write: ConnectionWrite,
            ) -> Result<Connection> {
                let now = ferry_core::time::now_millis().timestamp_millis();
                let result = sqlx::query(
                    "UPDATE connections SET name = $3, type = $4, configuration = $5, \
                     secrets = $6, status = $7, status_error = $8, healthcheck_interval = $9, \
                     policies = $10, updated_at = $11, updated_by = $12 \
                     WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .bind(&write.name)
                .bind(&write.type_id)
                .bind(json_text(&write.configuration)?)
                .bind(&write.secrets)
                .bind(&write.status)
                .bind(&write.status_error)
                .bind(&write.healthcheck_interval)
                .bind(json_text(&write.policies)?)
                .bind(now)
                .bind(&write.actor)
                .execute(&self.pool)
                .await?;
                if result.rows_affected() == 0 {
                    return Err(not_found());
                }
                self.connection(organization_id, id).await
            }

            async fn delete_connection(&self, organization_id: Uuid, id: Uuid) -> Result<()> {
                let mut tx = self.begin_write().await?;
                let exists = sqlx::query(
                    "SELECT id FROM connections WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                if exists.is_none() {
                    // Roll back now: a dropped transaction is only rolled back when its
                    // connection is next used, and SQLite would keep its lock until then.
                    tx.rollback().await?;
                    return Err(not_found());
                }
                for table in ["connection_dependents", "connection_api_calls"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE connection_id = $1"))
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("DELETE FROM connections WHERE organization_id = $1 AND id = $2")
                    .bind(organization_id.to_string())
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn connection_dependents(&self, id: Uuid) -> Result<Vec<ConnectionDependent>> {
                let rows = sqlx::query(
                    "SELECT dependent_kind, dependent_id, dependent_name FROM connection_dependents \
                     WHERE connection_id = $1 ORDER BY dependent_kind, dependent_name",
                )
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(ConnectionDependent {
                            kind: row.try_get("dependent_kind")?,
                            id: row.try_get("dependent_id")?,
                            name: row.try_get("dependent_name")?,
                        })
                    })
                    .collect()
            }

            async fn add_connection_dependent(
                &self,
                connection_id: Uuid,
                dependent: &ConnectionDependent,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO connection_dependents \
                     (connection_id, dependent_kind, dependent_id, dependent_name) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(connection_id.to_string())
                .bind(&dependent.kind)
                .bind(&dependent.id)
                .bind(&dependent.name)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn record_api_calls(
                &self,
                connection_id: Uuid,
                at: DateTime<Utc>,
                calls: i64,
            ) -> Result<()> {
                let bucket = at.timestamp_millis() - at.timestamp_millis().rem_euclid(60_000);
                sqlx::query(
                    "INSERT INTO connection_api_calls (connection_id, bucket_start, calls) \
                     VALUES ($1, $2, $3) ON CONFLICT (connection_id, bucket_start) \
                     DO UPDATE SET calls = connection_api_calls.calls + excluded.calls",
                )
                .bind(connection_id.to_string())
                .bind(bucket)
                .bind(calls)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn api_calls_since(
                &self,
                connection_id: Uuid,
                since: DateTime<Utc>,
            ) -> Result<i64> {
                let since = since.timestamp_millis() - since.timestamp_millis().rem_euclid(60_000);
                let total: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(SUM(calls) AS BIGINT) FROM connection_api_calls \
                     WHERE connection_id = $1 AND bucket_start >= $2",
                )
                .bind(connection_id.to_string())
                .bind(since)
                .fetch_one(&self.pool)
                .await?;
                Ok(total.unwrap_or(0))
            }

            async fn replace_connection_secrets(
                &self,
                organization_id: Uuid,
                id: Uuid,
                secrets: Option<Vec<u8>>,
            ) -> Result<()> {
                let result = sqlx::query(
                    "UPDATE connections SET secrets = $3 WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .bind(&secrets)
                .execute(&self.pool)
                .await?;
                if result.rows_affected() == 0 {
                    return Err(not_found());
                }
                Ok(())
            }

            async fn health_check_candidates(&self) -> Result<Vec<HealthCheckCandidate>> {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS}, last_health_check_at FROM connections \
                     ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        let last: Option<i64> = row.try_get("last_health_check_at")?;
                        Ok(HealthCheckCandidate {
                            connection: row.to_connection()?,
                            last_checked_at: last.map(from_millis),
                        })
                    })
                    .collect()
            }

            async fn claim_health_check(
                &self,
                id: Uuid,
                last_checked_at: Option<DateTime<Utc>>,
                now: DateTime<Utc>,
            ) -> Result<bool> {
                let result = sqlx::query(
                    "UPDATE connections SET last_health_check_at = $3 \
                     WHERE id = $1 AND COALESCE(last_health_check_at, -1) = $2",
                )
                .bind(id.to_string())
                .bind(last_checked_at.map_or(-1, |at| at.timestamp_millis()))
                .bind(now.timestamp_millis())
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn record_connection_health(
                &self,
                id: Uuid,
                updated_at: DateTime<Utc>,
                status: &str,
                status_error: Option<&str>,
            ) -> Result<bool> {
                let result = sqlx::query(
                    "UPDATE connections SET status = $3, status_error = $4 \
                     WHERE id = $1 AND updated_at = $2",
                )
                .bind(id.to_string())
                .bind(updated_at.timestamp_millis())
                .bind(status)
                .bind(status_error)
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }
        }
    };
}
for_each_backend!(impl_connections);

/// `link_dependents` for both backends: the connections a model, sync or bulk sync
/// depends on, which keep those connections from being deleted.
macro_rules! impl_link_dependents {
    ($store:ty) => {
        impl $store {
            /// Inside `tx`, replaces the connections the resource `kind`/`id` depends on by
            /// `connections` (none: the resource is unlinked), recorded under `name`.
            pub(crate) async fn link_dependents(
                tx: &mut sqlx::Transaction<'static, <$store as crate::syncs::StoreDb>::Db>,
                kind: &str,
                id: Uuid,
                name: &str,
                connections: &[String],
            ) -> Result<()> {
                sqlx::query(
                    "DELETE FROM connection_dependents \
                     WHERE dependent_kind = $1 AND dependent_id = $2",
                )
                .bind(kind)
                .bind(id.to_string())
                .execute(&mut **tx)
                .await?;
                for connection_id in connections {
                    sqlx::query(
                        "INSERT INTO connection_dependents \
                         (connection_id, dependent_kind, dependent_id, dependent_name) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(connection_id)
                    .bind(kind)
                    .bind(id.to_string())
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }
        }
    };
}
for_each_backend!(impl_link_dependents);
