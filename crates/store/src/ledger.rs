//! The per-sync ledger: for every identity value a sync has handled, the hash of the mapped
//! values last *confirmed* written to the target, the target's record id and the last
//! outcome.
//!
//! The engine reads it to skip unchanged rows and advances an entry only after the target
//! confirmed the write (or, for `pending_create`, right before a create whose outcome could
//! be lost, so the next run re-resolves the record by its identity instead of creating it
//! again). Failed rows keep their previous hash, so they are retried on the next run.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::syncs::placeholders;
use crate::{Result, StoreError, for_each_backend, from_millis};

/// Largest number of identities looked up per statement (keeps bind counts far below both
/// backends' limits, and SQLite's linear `$n` lookup cheap).
pub const LOOKUP_CHUNK: usize = 100;

/// Entries written per statement (6 binds each). Small on purpose: SQLite resolves each
/// `$n` by a linear scan of the statement's parameters, so binding is quadratic in them.
const WRITE_CHUNK: usize = 40;

/// The entries with only the last one of each identity kept, in order (later entries
/// replace earlier ones, as separate writes would).
fn last_per_identity(entries: &[LedgerEntry]) -> Vec<&LedgerEntry> {
    let mut last = std::collections::HashMap::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        last.insert(entry.identity.as_str(), index);
    }
    entries
        .iter()
        .enumerate()
        .filter(|(index, entry)| last.get(entry.identity.as_str()) == Some(index))
        .map(|(_, entry)| entry)
        .collect()
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The identity value (the source value of the sync's identity field).
    pub identity: String,
    /// Hash of the mapped values last confirmed written; `None` when never confirmed.
    pub hash: Option<String>,
    /// The target record id (Salesforce Id).
    pub record_id: Option<String>,
    /// `inserted`, `updated`, `deleted`, `baseline`, `failed`, `skipped` or
    /// `pending_create`.
    pub outcome: String,
    /// The target's error code of the last failure.
    pub error_code: Option<String>,
    /// When the entry last changed (ignored on write: the store sets it).
    pub updated_at: DateTime<Utc>,
}

impl LedgerEntry {
    /// An entry with `updated_at` left for the store to set.
    pub fn new(
        identity: impl Into<String>,
        hash: Option<String>,
        record_id: Option<String>,
        outcome: impl Into<String>,
        error_code: Option<String>,
    ) -> Self {
        LedgerEntry {
            identity: identity.into(),
            hash,
            record_id,
            outcome: outcome.into(),
            error_code,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }
}

/// Ledger persistence. The caller has resolved the sync within its organization.
#[async_trait]
pub trait LedgerStore {
    /// Entries for the given identities (missing identities are absent from the result).
    async fn ledger_entries(
        &self,
        sync_id: Uuid,
        identities: &[String],
    ) -> Result<Vec<LedgerEntry>>;
    /// Inserts or replaces entries, all in one transaction.
    async fn put_ledger_entries(&self, sync_id: Uuid, entries: &[LedgerEntry]) -> Result<()>;
    /// Number of entries of a sync.
    async fn count_ledger_entries(&self, sync_id: Uuid) -> Result<i64>;
    /// Removes every entry of a sync.
    async fn clear_ledger(&self, sync_id: Uuid) -> Result<()>;
}

macro_rules! impl_ledger {
    ($store:ty) => {
        #[async_trait]
        impl LedgerStore for $store {
            async fn ledger_entries(
                &self,
                sync_id: Uuid,
                identities: &[String],
            ) -> Result<Vec<LedgerEntry>> {
                let mut entries = Vec::with_capacity(identities.len());
                for chunk in identities.chunks(LOOKUP_CHUNK) {
                    let sql = format!(
                        "SELECT identity, hash, record_id, outcome, error_code, updated_at \
                         FROM sync_ledger WHERE sync_id = $1 AND identity IN ({})",
                        placeholders(2, chunk.len())
                    );
                    let mut query = sqlx::query(&sql).bind(sync_id.to_string());
                    for identity in chunk {
                        query = query.bind(identity);
                    }
                    for row in query.fetch_all(&self.pool).await? {
                        entries.push(LedgerEntry {
                            identity: row.try_get("identity")?,
                            hash: row.try_get("hash")?,
                            record_id: row.try_get("record_id")?,
                            outcome: row.try_get("outcome")?,
                            error_code: row.try_get("error_code")?,
                            updated_at: from_millis(row.try_get("updated_at")?),
                        });
                    }
                }
                Ok(entries)
            }

            async fn put_ledger_entries(
                &self,
                sync_id: Uuid,
                entries: &[LedgerEntry],
            ) -> Result<()> {
                if entries.is_empty() {
                    return Ok(());
                }
                let now = ferry_core::time::now_millis().timestamp_millis();
                let entries = last_per_identity(entries);
                let mut tx = self.pool.begin().await?;
                // Multi-row statements (one identity at most once per statement, as
                // PostgreSQL's ON CONFLICT requires).
                for chunk in entries.chunks(WRITE_CHUNK) {
                    let values: Vec<String> = (0..chunk.len())
                        .map(|i| format!("($1, {})", placeholders(2 + i * 6, 6)))
                        .collect();
                    let sql = format!(
                        "INSERT INTO sync_ledger \
                         (sync_id, identity, hash, record_id, outcome, error_code, updated_at) \
                         VALUES {} \
                         ON CONFLICT (sync_id, identity) DO UPDATE SET hash = excluded.hash, \
                         record_id = excluded.record_id, outcome = excluded.outcome, \
                         error_code = excluded.error_code, updated_at = excluded.updated_at",
                        values.join(", ")
                    );
                    let mut query = sqlx::query(&sql).bind(sync_id.to_string());
                    for entry in chunk {
                        query = query
                            .bind(&entry.identity)
                            .bind(&entry.hash)
                            .bind(&entry.record_id)
                            .bind(&entry.outcome)
                            .bind(&entry.error_code)
                            .bind(now);
                    }
                    query
                        .execute(&mut *tx)
                        .await
                        .map_err(|error| match &error {
                            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                                StoreError::NotFound { entity: "sync" }
                            }
                            _ => StoreError::Database(error),
                        })?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn count_ledger_entries(&self, sync_id: Uuid) -> Result<i64> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM sync_ledger WHERE sync_id = $1")
                    .bind(sync_id.to_string())
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get("n")?)
            }

            async fn clear_ledger(&self, sync_id: Uuid) -> Result<()> {
                sqlx::query("DELETE FROM sync_ledger WHERE sync_id = $1")
                    .bind(sync_id.to_string())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}
for_each_backend!(impl_ledger);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_entry_of_an_identity_wins() {
        let entries = [
            LedgerEntry::new("a", None, None, "pending_create", None),
            LedgerEntry::new("b", None, None, "failed", None),
            LedgerEntry::new("a", Some("h".into()), Some("003".into()), "inserted", None),
        ];
        let kept: Vec<(&str, &str)> = last_per_identity(&entries)
            .into_iter()
            .map(|e| (e.identity.as_str(), e.outcome.as_str()))
            .collect();
        assert_eq!(kept, [("b", "failed"), ("a", "inserted")]);
    }
}
