//! Models: what a sync reads — a table, view or query of a source connection — with the
//! fields discovered from it. The store keeps the API's documents (configuration, fields,
//! relations, additional fields) as JSON; it does not interpret them.
//!
//! A model is registered as a dependent (`kind = "model"`) of its connection in the same
//! transaction that writes it, so a connection in use cannot be deleted unnoticed; deleting
//! the model removes that link.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

use crate::{Result, StoreError, for_each_backend, from_millis};

/// The dependent kind models register under.
pub const DEPENDENT_KIND: &str = "model";

/// A stored model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Public id.
    pub id: Uuid,
    /// Owning organization.
    pub organization_id: Uuid,
    /// The source connection.
    pub connection_id: Uuid,
    /// Display name.
    pub name: String,
    /// Source-specific configuration (`{"table": ...}`, `{"query": ...}`, ...).
    pub configuration: Value,
    /// The discovered fields (a JSON array of field documents).
    pub fields: Value,
    /// The unique-key field, if chosen.
    pub identifier: Option<String>,
    /// Change-tracking columns.
    pub tracking_columns: Vec<String>,
    /// Label ids.
    pub labels: Vec<String>,
    /// User-defined extra fields (a JSON array).
    pub additional_fields: Value,
    /// Joins to other models (a JSON array).
    pub relations: Value,
    /// Permission policy ids.
    pub policies: Vec<String>,
    /// 1 on creation, incremented by every update.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Creator (API key id).
    pub created_by: Option<String>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
    /// Last updater (API key id).
    pub updated_by: Option<String>,
}

/// The writable part of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelWrite {
    /// The source connection (must belong to the same organization; the caller checks).
    pub connection_id: Uuid,
    /// Display name.
    pub name: String,
    /// Source-specific configuration.
    pub configuration: Value,
    /// The discovered fields (JSON array).
    pub fields: Value,
    /// The unique-key field.
    pub identifier: Option<String>,
    /// Change-tracking columns.
    pub tracking_columns: Vec<String>,
    /// Label ids.
    pub labels: Vec<String>,
    /// User-defined extra fields (JSON array).
    pub additional_fields: Value,
    /// Joins to other models (JSON array).
    pub relations: Value,
    /// Permission policy ids.
    pub policies: Vec<String>,
    /// Who writes (API key id).
    pub actor: Option<String>,
}

/// Model persistence. Every call is scoped to an organization: an id from another
/// organization behaves exactly like an unknown id.
#[async_trait]
pub trait ModelStore {
    /// Inserts a model (version 1) and registers it as a dependent of its connection.
    async fn create_model(&self, organization_id: Uuid, write: ModelWrite) -> Result<Model>;
    /// Fetches one model.
    async fn model(&self, organization_id: Uuid, id: Uuid) -> Result<Model>;
    /// Every model of the organization, most recently updated first (id breaks ties).
    async fn list_models(&self, organization_id: Uuid) -> Result<Vec<Model>>;
    /// Replaces a model's writable fields, incrementing its version and moving its
    /// dependent link when the connection or name changes.
    async fn update_model(
        &self,
        organization_id: Uuid,
        id: Uuid,
        write: ModelWrite,
    ) -> Result<Model>;
    /// Deletes a model and its dependent link.
    async fn delete_model(&self, organization_id: Uuid, id: Uuid) -> Result<()>;
}

const COLUMNS: &str = "id, organization_id, connection_id, name, configuration, fields, \
                       identifier, tracking_columns, labels, additional_fields, relations, \
                       policies, version, created_at, created_by, updated_at, updated_by";

trait ModelRow {
    fn to_model(&self) -> Result<Model>;
}

macro_rules! impl_model_row {
    ($row:ty) => {
        impl ModelRow for $row {
            fn to_model(&self) -> Result<Model> {
                let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
                let uuid = |column: &str| -> Result<Uuid> {
                    let text: String = self.try_get(column)?;
                    Uuid::parse_str(&text).map_err(|e| corrupt(&e))
                };
                let json = |column: &str| -> Result<Value> {
                    let text: String = self.try_get(column)?;
                    serde_json::from_str(&text).map_err(|e| corrupt(&e))
                };
                let strings = |column: &str| -> Result<Vec<String>> {
                    let text: String = self.try_get(column)?;
                    serde_json::from_str(&text).map_err(|e| corrupt(&e))
                };
                Ok(Model {
                    id: uuid("id")?,
                    organization_id: uuid("organization_id")?,
                    connection_id: uuid("connection_id")?,
                    name: self.try_get("name")?,
                    configuration: json("configuration")?,
                    fields: json("fields")?,
                    identifier: self.try_get("identifier")?,
                    tracking_columns: strings("tracking_columns")?,
                    labels: strings("labels")?,
                    additional_fields: json("additional_fields")?,
                    relations: json("relations")?,
                    policies: strings("policies")?,
                    version: self.try_get("version")?,
                    created_at: from_millis(self.try_get("created_at")?),
                    created_by: self.try_get("created_by")?,
                    updated_at: from_millis(self.try_get("updated_at")?),
                    updated_by: self.try_get("updated_by")?,
                })
            }
        }
    };
}
impl_model_row!(sqlx::sqlite::SqliteRow);
impl_model_row!(sqlx::postgres::PgRow);

fn not_found() -> StoreError {
    StoreError::NotFound { entity: "model" }
}

fn connection_not_found() -> StoreError {
    StoreError::NotFound {
        entity: "connection",
    }
}

fn json_text(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

macro_rules! impl_models {
    ($store:ty) => {
        #[async_trait]
        impl ModelStore for $store {
            async fn create_model(
                &self,
                organization_id: Uuid,
                write: ModelWrite,
            ) -> Result<Model> {
                let id = Uuid::new_v4();
                let now = ferry_core::time::now_millis().timestamp_millis();
                let mut tx = self.begin_write().await?;
                let connection = sqlx::query(
                    "SELECT id FROM connections WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(write.connection_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                if connection.is_none() {
                    // Roll back now: a dropped transaction is only rolled back when its
                    // connection is next used, and SQLite would keep its locks until then.
                    tx.rollback().await?;
                    return Err(connection_not_found());
                }
                sqlx::query(&format!(
                    "INSERT INTO models ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                     $9, $10, $11, $12, 1, $13, $14, $13, $14)"
                ))
                .bind(id.to_string())
                .bind(organization_id.to_string())
                .bind(write.connection_id.to_string())
                .bind(&write.name)
                .bind(json_text(&write.configuration)?)
                .bind(json_text(&write.fields)?)
                .bind(&write.identifier)
                .bind(json_text(&write.tracking_columns)?)
                .bind(json_text(&write.labels)?)
                .bind(json_text(&write.additional_fields)?)
                .bind(json_text(&write.relations)?)
                .bind(json_text(&write.policies)?)
                .bind(now)
                .bind(&write.actor)
                .execute(&mut *tx)
                .await?;
                Self::link_dependents(
                    &mut tx,
                    DEPENDENT_KIND,
                    id,
                    &write.name,
                    &[write.connection_id.to_string()],
                )
                .await?;
                tx.commit().await?;
                self.model(organization_id, id).await
            }

            async fn model(&self, organization_id: Uuid, id: Uuid) -> Result<Model> {
                let row = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM models WHERE organization_id = $1 AND id = $2"
                ))
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref()
                    .map(ModelRow::to_model)
                    .transpose()?
                    .ok_or_else(not_found)
            }

            async fn list_models(&self, organization_id: Uuid) -> Result<Vec<Model>> {
                let rows = sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM models WHERE organization_id = $1 \
                     ORDER BY updated_at DESC, id"
                ))
                .bind(organization_id.to_string())
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(ModelRow::to_model).collect()
            }

            async fn update_model(
                &self,
                organization_id: Uuid,
                id: Uuid,
                write: ModelWrite,
            ) -> Result<Model> {
                let now = ferry_core::time::now_millis().timestamp_millis();
                let mut tx = self.begin_write().await?;
                let connection = sqlx::query(
                    "SELECT id FROM connections WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(write.connection_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                if connection.is_none() {
                    // Roll back now: a dropped transaction is only rolled back when its
                    // connection is next used, and SQLite would keep its locks until then.
                    tx.rollback().await?;
                    return Err(connection_not_found());
                }
                let result = sqlx::query(
                    "UPDATE models SET connection_id = $3, name = $4, configuration = $5, \
                     fields = $6, identifier = $7, tracking_columns = $8, labels = $9, \
                     additional_fields = $10, relations = $11, policies = $12, \
                     version = version + 1, updated_at = $13, updated_by = $14 \
                     WHERE organization_id = $1 AND id = $2",
                )
                .bind(organization_id.to_string())
                .bind(id.to_string())
                .bind(write.connection_id.to_string())
                .bind(&write.name)
                .bind(json_text(&write.configuration)?)
                .bind(json_text(&write.fields)?)
                .bind(&write.identifier)
                .bind(json_text(&write.tracking_columns)?)
                .bind(json_text(&write.labels)?)
                .bind(json_text(&write.additional_fields)?)
                .bind(json_text(&write.relations)?)
                .bind(json_text(&write.policies)?)
                .bind(now)
                .bind(&write.actor)
                .execute(&mut *tx)
                .await?;
                if result.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Err(not_found());
                }
                Self::link_dependents(
                    &mut tx,
                    DEPENDENT_KIND,
                    id,
                    &write.name,
                    &[write.connection_id.to_string()],
                )
                .await?;
                tx.commit().await?;
                self.model(organization_id, id).await
            }

            async fn delete_model(&self, organization_id: Uuid, id: Uuid) -> Result<()> {
                let mut tx = self.begin_write().await?;
                let result =
                    sqlx::query("DELETE FROM models WHERE organization_id = $1 AND id = $2")
                        .bind(organization_id.to_string())
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?;
                if result.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Err(not_found());
                }
                Self::link_dependents(&mut tx, DEPENDENT_KIND, id, "", &[]).await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}
for_each_backend!(impl_models);
