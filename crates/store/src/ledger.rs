//! The per-sync ledger: for every identity value a sync has handled, the hash of the mapped
//! values last *confirmed* written to the target, the target's record id and the last
//! outcome.
//!
//! The engine reads it to skip unchanged rows and advances an entry only after the target
//! confirmed the write (or, for `pending_create`, right before a create whose outcome could
//! be lost, so the next run re-resolves the record by its identity instead of creating it
//! again). Failed rows keep their previous hash, so they are retried on the next run.

use std::borrow::Cow;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::backend::{PostgresStore, SqliteStore};
use crate::{FastMap, Result, StoreError, from_millis};

/// Identities looked up per statement (one parameter each: a JSON array on SQLite, a
/// `text[]` on PostgreSQL, so statements stay small and cheap to bind).
pub const LOOKUP_CHUNK: usize = 10_000;

/// Entries written per statement on PostgreSQL (passed as arrays, like lookups).
const WRITE_CHUNK: usize = 5_000;

/// Entries written per statement on SQLite (seven bound values each, well under SQLite's
/// limit of 32,766 variables per statement).
const SQLITE_WRITE_ROWS: usize = 1_000;

/// The entries with only the last one of each identity kept, in order (later entries
/// replace earlier ones, as separate writes would).
fn last_per_identity(entries: &[LedgerEntry]) -> Vec<&LedgerEntry> {
    let mut last = FastMap::with_capacity_and_hasher(entries.len(), Default::default());
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
    /// The rows of `rows` (`(identity, hash)`) the ledger does not know as written with that
    /// hash: each with its position in `rows` and its entry, if any. A row is left out when
    /// its entry has the same hash and one of the `confirmed` outcomes — so a run over
    /// unchanged rows reads nothing back. Positions come back in no particular order.
    async fn ledger_changes(
        &self,
        sync_id: Uuid,
        rows: &[(&str, &str)],
        confirmed: &[&str],
    ) -> Result<Vec<(usize, Option<LedgerEntry>)>>;
    /// Inserts or replaces entries, all in one transaction, which also removes the sync's
    /// window marks.
    async fn put_ledger_entries(&self, sync_id: Uuid, entries: &[LedgerEntry]) -> Result<()>;
    /// Number of entries of a sync.
    async fn count_ledger_entries(&self, sync_id: Uuid) -> Result<i64>;
    /// Whether a sync has no entries (cheaper than counting them).
    async fn ledger_is_empty(&self, sync_id: Uuid) -> Result<bool>;
    /// Removes every entry of a sync (and its window marks).
    async fn clear_ledger(&self, sync_id: Uuid) -> Result<()>;
    /// The window marks of a sync, `(window number, fingerprint)` in window order: read
    /// windows whose every row the ledger held as confirmed when a run completed (the
    /// engine's `run` module says how they are made and used).
    async fn window_marks(&self, sync_id: Uuid) -> Result<Vec<(i64, String)>>;
    /// Replaces the window marks of a sync with `marks` (empty: removes them), in one
    /// transaction.
    async fn put_window_marks(&self, sync_id: Uuid, marks: &[(i64, String)]) -> Result<()>;
    /// Refreshes the planner statistics of the ledger table, for after a run added many
    /// entries ([`needs_fresh_statistics`]). PostgreSQL: `ANALYZE sync_ledger`, so the next
    /// run's ledger reads are planned for the table's real size instead of waiting for
    /// autovacuum to notice the growth. SQLite: nothing (its ledger reads probe the primary
    /// key whatever the statistics say).
    async fn analyze_ledger(&self) -> Result<()>;
}

/// Entries a run must add to a sync's ledger for [`needs_fresh_statistics`], however
/// large the ledger was.
pub const ANALYZE_AFTER_ENTRIES: i64 = 10_000;

/// Growth of a sync's ledger (in percent of its entries before the run) that also calls
/// for fresh statistics, once at least [`ANALYZE_MIN_GROWTH`] entries were added.
pub const ANALYZE_AFTER_GROWTH_PERCENT: i64 = 20;

/// Fewer added entries than this never call for fresh statistics.
pub const ANALYZE_MIN_GROWTH: i64 = 1_000;

/// Whether a run that took a sync's ledger from `before` to `after` entries should be
/// followed by [`LedgerStore::analyze_ledger`]: it added more than
/// [`ANALYZE_AFTER_ENTRIES`], or at least [`ANALYZE_MIN_GROWTH`] and more than
/// [`ANALYZE_AFTER_GROWTH_PERCENT`] of what was there.
pub fn needs_fresh_statistics(before: i64, after: i64) -> bool {
    let added = after.saturating_sub(before);
    added > ANALYZE_AFTER_ENTRIES
        || (added >= ANALYZE_MIN_GROWTH
            && added.saturating_mul(100)
                > before.max(0).saturating_mul(ANALYZE_AFTER_GROWTH_PERCENT))
}

/// A row read back with the columns of [`ENTRY_COLUMNS`] (`identity` NULL: no entry).
trait EntryRow {
    fn entry(&self) -> Result<Option<LedgerEntry>>;
}

macro_rules! impl_entry_row {
    ($row:ty) => {
        impl EntryRow for $row {
            fn entry(&self) -> Result<Option<LedgerEntry>> {
                let Some(identity) = self.try_get::<Option<String>, _>("identity")? else {
                    return Ok(None);
                };
                Ok(Some(LedgerEntry {
                    identity,
                    hash: self.try_get("hash")?,
                    record_id: self.try_get("record_id")?,
                    outcome: self
                        .try_get::<Option<String>, _>("outcome")?
                        .unwrap_or_default(),
                    error_code: self.try_get("error_code")?,
                    updated_at: from_millis(
                        self.try_get::<Option<i64>, _>("updated_at")?.unwrap_or(0),
                    ),
                }))
            }
        }
    };
}
impl_entry_row!(sqlx::sqlite::SqliteRow);
impl_entry_row!(sqlx::postgres::PgRow);

/// `count_ledger_entries` for either backend.
macro_rules! count_entries {
    ($store:expr, $sync_id:expr) => {{
        let row = sqlx::query("SELECT COUNT(*) AS n FROM sync_ledger WHERE sync_id = $1")
            .bind($sync_id.to_string())
            .fetch_one(&$store.pool)
            .await?;
        Ok(row.try_get("n")?)
    }};
}

/// `ledger_is_empty` for either backend.
macro_rules! no_entries {
    ($store:expr, $sync_id:expr) => {{
        let row = sqlx::query("SELECT 1 AS found FROM sync_ledger WHERE sync_id = $1 LIMIT 1")
            .bind($sync_id.to_string())
            .fetch_optional(&$store.pool)
            .await?;
        Ok(row.is_none())
    }};
}

/// `clear_ledger` for either backend (the marks first: marks never outlive their entries).
macro_rules! clear_entries {
    ($store:expr, $sync_id:expr) => {{
        for statement in [
            "DELETE FROM sync_window_marks WHERE sync_id = $1",
            "DELETE FROM sync_ledger WHERE sync_id = $1",
        ] {
            sqlx::query(statement)
                .bind($sync_id.to_string())
                .execute(&$store.pool)
                .await?;
        }
        Ok(())
    }};
}

/// Removes a sync's window marks in a transaction writing its ledger (marks describe the
/// ledger as it was when they were made, so any later write of an entry ends them) or its
/// marks.
macro_rules! forget_marks {
    ($tx:expr, $sync_id:expr) => {
        sqlx::query("DELETE FROM sync_window_marks WHERE sync_id = $1")
            .bind($sync_id)
            .execute($tx)
            .await?;
    };
}

/// `window_marks` for either backend.
macro_rules! read_marks {
    ($store:expr, $sync_id:expr) => {{
        let rows = sqlx::query(
            "SELECT window_no, fingerprint FROM sync_window_marks WHERE sync_id = $1 \
             ORDER BY window_no",
        )
        .bind($sync_id.to_string())
        .fetch_all(&$store.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("window_no")?, row.try_get("fingerprint")?)))
            .collect()
    }};
}

/// `put_window_marks` for either backend (a run marks at most a few thousand windows).
macro_rules! write_marks {
    ($store:expr, $sync_id:expr, $marks:expr) => {{
        let sync_id = $sync_id.to_string();
        let mut tx = $store.begin_write().await?;
        forget_marks!(&mut *tx, sync_id.as_str());
        for (window, fingerprint) in $marks {
            sqlx::query(
                "INSERT INTO sync_window_marks (sync_id, window_no, fingerprint) \
                 VALUES ($1, $2, $3)",
            )
            .bind(sync_id.as_str())
            .bind(*window)
            .bind(fingerprint.as_str())
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        }
        tx.commit().await?;
        Ok(())
    }};
}

/// A row position read back as a `usize`.
fn position(value: i64) -> Result<usize> {
    usize::try_from(value).map_err(|_| StoreError::Corrupt(format!("row position {value}")))
}

fn write_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::NotFound { entity: "sync" }
        }
        _ => StoreError::Database(error),
    }
}

fn json_text(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// `(key, value)` pairs serialized as one JSON object (the keys are distinct).
struct PairsAsObject<'a>(&'a [(&'a str, &'a str)]);

impl serde::Serialize for PairsAsObject<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(key, value)| (key, value)))
    }
}

const ENTRY_COLUMNS: &str =
    "l.identity, l.hash, l.record_id, l.outcome, l.error_code, l.updated_at";

const UPSERT_TAIL: &str = "ON CONFLICT (sync_id, identity) DO UPDATE SET hash = excluded.hash, \
     record_id = excluded.record_id, outcome = excluded.outcome, \
     error_code = excluded.error_code, updated_at = excluded.updated_at";

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn ledger_entries(
        &self,
        sync_id: Uuid,
        identities: &[String],
    ) -> Result<Vec<LedgerEntry>> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM sync_ledger AS l WHERE l.sync_id = $1 \
             AND l.identity IN (SELECT value FROM json_each($2))"
        );
        let mut entries = Vec::with_capacity(identities.len());
        for chunk in identities.chunks(LOOKUP_CHUNK) {
            let rows = sqlx::query(&sql)
                .bind(sync_id.to_string())
                .bind(json_text(&chunk)?)
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                entries.extend(row.entry()?);
            }
        }
        Ok(entries)
    }

    async fn ledger_changes(
        &self,
        sync_id: Uuid,
        rows: &[(&str, &str)],
        confirmed: &[&str],
    ) -> Result<Vec<(usize, Option<LedgerEntry>)>> {
        // Distinct identities go as one JSON object `{identity: hash}`, which `json_each`
        // walks as key/value with no JSON parsing per row (about a third of the lookup's
        // cost on a run with nothing to send); `v.key` is then the identity, found in
        // `positions`. With a repeated identity, an array of `[identity, hash]` pairs, whose
        // `v.key` is the position itself.
        const BY_IDENTITY: &str = "l.identity = v.key";
        const BY_PAIR: &str = "l.identity = json_extract(v.value, '$[0]')";
        let mut positions: FastMap<&str, usize> =
            FastMap::with_capacity_and_hasher(rows.len().min(LOOKUP_CHUNK), Default::default());
        let confirmed = json_text(&confirmed)?;
        let mut out = Vec::new();
        for (chunk_index, chunk) in rows.chunks(LOOKUP_CHUNK).enumerate() {
            positions.clear();
            let distinct = chunk
                .iter()
                .enumerate()
                .all(|(at, (identity, _))| positions.insert(identity, at).is_none());
            let (join, hash, rows_param) = if distinct {
                (BY_IDENTITY, "v.value", json_text(&PairsAsObject(chunk))?)
            } else {
                (BY_PAIR, "json_extract(v.value, '$[1]')", json_text(&chunk)?)
            };
            let sql = format!(
                "SELECT v.key AS row_key, {ENTRY_COLUMNS} FROM json_each($2) AS v \
                 LEFT JOIN sync_ledger AS l ON l.sync_id = $1 AND {join} \
                 WHERE l.identity IS NULL OR l.hash IS NULL OR l.hash <> {hash} \
                 OR l.outcome NOT IN (SELECT value FROM json_each($3))"
            );
            let found = sqlx::query(&sql)
                .bind(sync_id.to_string())
                .bind(rows_param)
                .bind(&confirmed)
                .fetch_all(&self.pool)
                .await?;
            for row in &found {
                let at = if distinct {
                    let identity: &str = row.try_get("row_key")?;
                    positions.get(identity).copied().ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "ledger lookup returned unknown identity {identity:?}"
                        ))
                    })?
                } else {
                    position(row.try_get("row_key")?)?
                };
                out.push((chunk_index * LOOKUP_CHUNK + at, row.entry()?));
            }
        }
        Ok(out)
    }

    async fn put_ledger_entries(&self, sync_id: Uuid, entries: &[LedgerEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = ferry_core::time::now_millis().timestamp_millis();
        let entries = last_per_identity(entries);
        // Multi-row statements with every value bound, seven per entry. The parameters
        // are anonymous (`?`): sqlx asks SQLite for every parameter's name, which SQLite
        // finds by walking the statement's list of named ones — quadratic at this size.
        let sync_id = sync_id.to_string();
        let insert = |rows: usize| {
            format!(
                "INSERT INTO sync_ledger \
                 (sync_id, identity, hash, record_id, outcome, error_code, updated_at) \
                 VALUES {} {UPSERT_TAIL}",
                vec!["(?, ?, ?, ?, ?, ?, ?)"; rows].join(", ")
            )
        };
        // Full chunks share one statement text (and one cached statement).
        let full = (entries.len() >= SQLITE_WRITE_ROWS).then(|| insert(SQLITE_WRITE_ROWS));
        let mut tx = self.begin_write().await?;
        forget_marks!(&mut *tx, sync_id.as_str());
        for chunk in entries.chunks(SQLITE_WRITE_ROWS) {
            let sql = match &full {
                Some(full) if chunk.len() == SQLITE_WRITE_ROWS => Cow::Borrowed(full.as_str()),
                _ => Cow::Owned(insert(chunk.len())),
            };
            let mut query = sqlx::query(&sql).persistent(chunk.len() == SQLITE_WRITE_ROWS);
            for entry in chunk {
                query = query
                    .bind(sync_id.as_str())
                    .bind(entry.identity.as_str())
                    .bind(entry.hash.as_deref())
                    .bind(entry.record_id.as_deref())
                    .bind(entry.outcome.as_str())
                    .bind(entry.error_code.as_deref())
                    .bind(now);
            }
            query.execute(&mut *tx).await.map_err(write_error)?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn count_ledger_entries(&self, sync_id: Uuid) -> Result<i64> {
        count_entries!(self, sync_id)
    }

    async fn ledger_is_empty(&self, sync_id: Uuid) -> Result<bool> {
        no_entries!(self, sync_id)
    }

    async fn clear_ledger(&self, sync_id: Uuid) -> Result<()> {
        clear_entries!(self, sync_id)
    }

    async fn window_marks(&self, sync_id: Uuid) -> Result<Vec<(i64, String)>> {
        read_marks!(self, sync_id)
    }

    async fn put_window_marks(&self, sync_id: Uuid, marks: &[(i64, String)]) -> Result<()> {
        write_marks!(self, sync_id, marks)
    }

    async fn analyze_ledger(&self) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl LedgerStore for PostgresStore {
    async fn ledger_entries(
        &self,
        sync_id: Uuid,
        identities: &[String],
    ) -> Result<Vec<LedgerEntry>> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM sync_ledger AS l WHERE l.sync_id = $1 \
             AND l.identity = ANY($2)"
        );
        let mut entries = Vec::with_capacity(identities.len());
        for chunk in identities.chunks(LOOKUP_CHUNK) {
            let rows = sqlx::query(&sql)
                .bind(sync_id.to_string())
                .bind(chunk)
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                entries.extend(row.entry()?);
            }
        }
        Ok(entries)
    }

    async fn ledger_changes(
        &self,
        sync_id: Uuid,
        rows: &[(&str, &str)],
        confirmed: &[&str],
    ) -> Result<Vec<(usize, Option<LedgerEntry>)>> {
        let sql = format!(
            "SELECT v.position - 1 AS position, {ENTRY_COLUMNS} \
             FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS v(identity, hash, position) \
             LEFT JOIN sync_ledger AS l ON l.sync_id = $1 AND l.identity = v.identity \
             WHERE l.identity IS NULL OR l.hash IS NULL OR l.hash <> v.hash \
             OR NOT (l.outcome = ANY($4::text[]))"
        );
        let mut out = Vec::new();
        for (chunk_index, chunk) in rows.chunks(LOOKUP_CHUNK).enumerate() {
            let identities: Vec<&str> = chunk.iter().map(|(identity, _)| *identity).collect();
            let hashes: Vec<&str> = chunk.iter().map(|(_, hash)| *hash).collect();
            let found = sqlx::query(&sql)
                .bind(sync_id.to_string())
                .bind(&identities)
                .bind(&hashes)
                .bind(confirmed)
                .fetch_all(&self.pool)
                .await?;
            for row in &found {
                let at = position(row.try_get("position")?)?;
                out.push((chunk_index * LOOKUP_CHUNK + at, row.entry()?));
            }
        }
        Ok(out)
    }

    async fn put_ledger_entries(&self, sync_id: Uuid, entries: &[LedgerEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let now = ferry_core::time::now_millis().timestamp_millis();
        let entries = last_per_identity(entries);
        // One statement per chunk: one array per column.
        let sql = format!(
            "INSERT INTO sync_ledger \
             (sync_id, identity, hash, record_id, outcome, error_code, updated_at) \
             SELECT $1, v.identity, v.hash, v.record_id, v.outcome, v.error_code, $7 \
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
             AS v(identity, hash, record_id, outcome, error_code) {UPSERT_TAIL}"
        );
        let mut tx = self.begin_write().await?;
        forget_marks!(&mut *tx, sync_id.to_string());
        for chunk in entries.chunks(WRITE_CHUNK) {
            let column = |get: fn(&LedgerEntry) -> Option<&str>| -> Vec<Option<&str>> {
                chunk.iter().map(|entry| get(entry)).collect()
            };
            sqlx::query(&sql)
                .bind(sync_id.to_string())
                .bind(column(|e| Some(e.identity.as_str())))
                .bind(column(|e| e.hash.as_deref()))
                .bind(column(|e| e.record_id.as_deref()))
                .bind(column(|e| Some(e.outcome.as_str())))
                .bind(column(|e| e.error_code.as_deref()))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(write_error)?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn count_ledger_entries(&self, sync_id: Uuid) -> Result<i64> {
        count_entries!(self, sync_id)
    }

    async fn ledger_is_empty(&self, sync_id: Uuid) -> Result<bool> {
        no_entries!(self, sync_id)
    }

    async fn clear_ledger(&self, sync_id: Uuid) -> Result<()> {
        clear_entries!(self, sync_id)
    }

    async fn window_marks(&self, sync_id: Uuid) -> Result<Vec<(i64, String)>> {
        read_marks!(self, sync_id)
    }

    async fn put_window_marks(&self, sync_id: Uuid, marks: &[(i64, String)]) -> Result<()> {
        write_marks!(self, sync_id, marks)
    }

    async fn analyze_ledger(&self) -> Result<()> {
        sqlx::query("ANALYZE sync_ledger")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

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

    #[test]
    fn statistics_are_refreshed_after_large_growth() {
        // A big first run, and big runs whatever the size.
        assert!(needs_fresh_statistics(0, 100_000));
        assert!(needs_fresh_statistics(1_000_000, 1_010_001));
        assert!(!needs_fresh_statistics(1_000_000, 1_010_000));
        // 20 % growth, once it is at least 1,000 entries.
        assert!(needs_fresh_statistics(5_000, 6_001));
        assert!(!needs_fresh_statistics(5_000, 6_000));
        assert!(!needs_fresh_statistics(0, 999));
        assert!(needs_fresh_statistics(0, 1_000));
        // Nothing added, or entries removed (a reset ledger).
        assert!(!needs_fresh_statistics(50_000, 50_000));
        assert!(!needs_fresh_statistics(50_000, 0));
    }
}
