//! Organizations: every resource belongs to exactly one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::{Result, StoreError, for_each_backend, from_millis, map_unique};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Public id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Organization persistence.
#[async_trait]
pub trait OrganizationStore {
    /// Creates an organization; [`StoreError::AlreadyExists`] when the name is taken.
    async fn create_organization(&self, name: &str) -> Result<Organization>;
    /// Finds an organization by name.
    async fn organization_by_name(&self, name: &str) -> Result<Option<Organization>>;
    /// Finds an organization by id.
    async fn organization(&self, id: Uuid) -> Result<Organization>;
    /// Returns the organization named `name`, creating it if missing (race-safe).
    async fn ensure_organization(&self, name: &str) -> Result<Organization> {
        if let Some(existing) = self.organization_by_name(name).await? {
            return Ok(existing);
        }
        match self.create_organization(name).await {
            Ok(created) => Ok(created),
            Err(StoreError::AlreadyExists { .. }) => {
                self.organization_by_name(name)
                    .await?
                    .ok_or(StoreError::NotFound {
                        entity: "organization",
                    })
            }
            Err(error) => Err(error),
        }
    }
    /// Number of organizations (used to detect a fresh store).
    async fn count_organizations(&self) -> Result<i64>;
}

fn decode(row: &impl OrgRow) -> Result<Organization> {
    row.to_org()
}

/// Decoding shared by both backends' rows.
trait OrgRow {
    fn to_org(&self) -> Result<Organization>;
}

macro_rules! impl_org_row {
    ($row:ty) => {
        impl OrgRow for $row {
            fn to_org(&self) -> Result<Organization> {
                let id: String = self.try_get("id")?;
                Ok(Organization {
                    id: Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    name: self.try_get("name")?,
                    created_at: from_millis(self.try_get("created_at")?),
                })
            }
        }
    };
}
impl_org_row!(sqlx::sqlite::SqliteRow);
impl_org_row!(sqlx::postgres::PgRow);

macro_rules! impl_organizations {
    ($store:ty) => {
        #[async_trait]
        impl OrganizationStore for $store {
            async fn create_organization(&self, name: &str) -> Result<Organization> {
                let org = Organization {
                    id: Uuid::new_v4(),
                    name: name.to_string(),
                    created_at: ferry_core::time::now_millis(),
                };
                sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(org.id.to_string())
                    .bind(&org.name)
                    .bind(org.created_at.timestamp_millis())
                    .execute(&self.pool)
                    .await
                    .map_err(map_unique("organization"))?;
                Ok(org)
            }

            async fn organization_by_name(&self, name: &str) -> Result<Option<Organization>> {
                let row =
                    sqlx::query("SELECT id, name, created_at FROM organizations WHERE name = $1")
                        .bind(name)
                        .fetch_optional(&self.pool)
                        .await?;
                row.as_ref().map(decode).transpose()
            }

            async fn organization(&self, id: Uuid) -> Result<Organization> {
                let row =
                    sqlx::query("SELECT id, name, created_at FROM organizations WHERE id = $1")
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await?;
                match row {
                    Some(row) => decode(&row),
                    None => Err(StoreError::NotFound {
                        entity: "organization",
                    }),
                }
            }

            async fn count_organizations(&self) -> Result<i64> {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(count)
            }
        }
    };
}
for_each_backend!(impl_organizations);
