//! `ferry-engine`: Ferry's sync engine. Today it runs model syncs (reverse ETL) from a
//! database model into Salesforce, one function per stage (`../shared/DESIGN.md`, "Engine
//! pipelines"):
//!
//! - [`spec`] — the `SyncRequest` document, the Salesforce target configuration (§3) and
//!   their validation into a [`spec::CompiledSync`].
//! - [`filter`] — filter functions and `filter_logic`.
//! - [`mapping`] — stage 2: rows → mapped rows (filters, overrides, mappings).
//! - [`change`] — stage 3: stable hashes and change detection against the ledger.
//! - [`plan`] — stage 4: per-row decisions (create, update, upsert, delete, skip, fail) and
//!   payloads (nulls, create-only fields, only-sync-different, invalid references).
//! - [`batch`] — stage 5: sorting (`sort_batches_by`) and batch cutting.
//! - [`target`] — Salesforce IO: describe, identity lookups, REST, Bulk 1.0 and Bulk 2.0
//!   writes (which Bulk API when: its module docs).
//! - [`run`] — one execution: the stages over streamed windows, per-record outcomes, ledger
//!   commits, record logs, counts, cancellation, the final serial pass for locked rows.
//! - [`runner`] — executions in flight, one cancellable task each.
//! - [`db_target`] — model syncs into PostgreSQL, MySQL and SQLite tables (discovery, new
//!   tables, upserts by identity, per-record outcomes).
//! - [`bulk`] — bulk syncs (ELT): Salesforce objects replicated into databases.
//!
//! Delivery is at-least-once made safe by identity: the ledger advances only for rows
//! Salesforce confirmed; a create whose outcome could be lost is marked `pending_create`
//! first, so the next run looks the identity up instead of creating it again.

pub mod batch;
pub mod bulk;
pub mod change;
pub mod db_target;
pub mod filter;
pub mod mapping;
pub mod plan;
pub mod run;
pub mod runner;
pub mod spec;
pub mod target;
pub mod write_jobs;

/// A hash map with a fast hasher (foldhash, seeded per process; not SipHash's collision
/// resistance), for the per-row maps and sets a run builds from its rows.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A hash set with the hasher of [`FastMap`].
pub(crate) type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// Whether `set`, of lowercase names, holds `name` compared without ASCII case — without
/// allocating for names of up to 64 bytes (it runs for every field of every row).
pub(crate) fn contains_lowercase<S: std::hash::BuildHasher>(
    set: &std::collections::HashSet<String, S>,
    name: &str,
) -> bool {
    let mut buffer = [0u8; 64];
    match buffer.get_mut(..name.len()) {
        Some(lower) => {
            lower.copy_from_slice(name.as_bytes());
            // ASCII lowercasing keeps UTF-8 valid.
            lower.make_ascii_lowercase();
            std::str::from_utf8(lower).is_ok_and(|lower| set.contains(lower))
        }
        None => set.contains(&name.to_ascii_lowercase()),
    }
}

pub use run::{EngineError, RunContext, RunEnd, RunOptions, RunTarget, execute};
pub use runner::Runner;
pub use spec::{CompiledSync, SyncDocument, TargetConfig};
pub use tokio_util::sync::CancellationToken;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_names_are_found_whatever_their_case() {
        let long = "a".repeat(70);
        let set: FastSet<String> = ["accountid", "ownerid", "straße__c", long.as_str()]
            .iter()
            .map(|name| name.to_string())
            .collect();
        for name in [
            "AccountId",
            "accountid",
            "OWNERID",
            "STRAßE__c",
            &"A".repeat(70),
        ] {
            assert!(contains_lowercase(&set, name), "{name}");
        }
        for name in ["Account", "AccountId ", "", &"a".repeat(64)] {
            assert!(!contains_lowercase(&set, name), "{name}");
        }
    }
}
