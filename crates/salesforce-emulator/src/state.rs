//! Shared server state: the org, the clock, OAuth tokens, API usage, call counters, query
//! cursors and injected faults.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::EmulatorConfig;
use crate::query::Plan;
use crate::store::{Org, WriteCtx};

thread_local! {
    /// Set while this thread runs an exclusive multi-step transaction (see
    /// [`AppState::exclusive`]); its own writes then skip the gate.
    static IN_TXN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

struct TxnFlag;

impl Drop for TxnFlag {
    fn drop(&mut self) {
        IN_TXN.with(|c| c.set(false));
    }
}

/// Open query cursors kept at most (the least recently used is dropped first).
pub const MAX_CURSORS: usize = 1000;

/// The injectable clock: real time plus an offset the admin API can move.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// Wall-clock epoch ms.
    pub fn real_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    /// Emulated now, epoch ms.
    pub fn now_ms(&self) -> i64 {
        Self::real_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Sets the emulated now.
    pub fn set_ms(&self, ms: i64) {
        self.offset_ms
            .store(ms - Self::real_ms(), Ordering::Relaxed);
    }

    /// Moves the clock forward (or back) by `ms`.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// Injected faults, applied to every API the emulator serves.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Fraction (0..1) of API requests answered with `error_status`.
    pub error_rate: f64,
    /// 500 or 503 (default 503).
    pub error_status: Option<u16>,
    /// Added latency per request, milliseconds.
    pub latency_ms: u64,
    /// Fraction (0..1) of record writes failing with `UNABLE_TO_LOCK_ROW`.
    pub lock_rate: f64,
    /// Lifetime of access tokens issued from now on, overriding the configured one.
    pub session_ttl_seconds: Option<u64>,
    /// The connected app's "refresh token rotation" policy: every refresh_token grant
    /// answers a new refresh token and the one presented stops working.
    pub rotate_refresh_tokens: bool,
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct Session {
    /// When it stops working.
    pub expires: Instant,
    /// Scopes granted.
    pub scope: String,
}

/// A pending authorization code.
#[derive(Debug, Clone)]
pub struct AuthCode {
    /// Client that asked for it.
    pub client_id: String,
    /// Redirect URI it was issued for.
    pub redirect_uri: String,
    /// Scopes.
    pub scope: String,
    /// PKCE challenge, if any.
    pub code_challenge: Option<String>,
    /// Issued at.
    pub issued: Instant,
}

/// OAuth state.
#[derive(Debug, Default)]
pub struct Tokens {
    /// Access tokens.
    pub sessions: HashMap<String, Session>,
    /// Refresh tokens → scope.
    pub refresh: HashMap<String, String>,
    /// Authorization codes.
    pub codes: HashMap<String, AuthCode>,
}

/// An open query cursor.
#[derive(Debug)]
pub struct Cursor {
    /// Root object.
    pub obj: usize,
    /// Compiled select list.
    pub plan: Arc<Plan>,
    /// Matching rows.
    pub rows: Arc<Vec<u32>>,
    /// Page size.
    pub batch: usize,
    /// Last use, for expiry.
    pub touched: Instant,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    org: RwLock<Org>,
    /// Configuration (credentials, limits).
    pub config: EmulatorConfig,
    /// `http(s)://host:port`, set once bound.
    pub base_url: RwLock<String>,
    /// Emulated clock.
    pub clock: Clock,
    /// OAuth tokens.
    pub tokens: Mutex<Tokens>,
    /// API calls used today.
    pub api_used: AtomicU64,
    /// Daily API request allowance.
    pub api_max: AtomicU64,
    /// Per-endpoint call counts (`GET /services/data/vXX.X/query` style keys).
    pub calls: Mutex<BTreeMap<String, u64>>,
    /// Open query cursors by locator id.
    pub cursors: Mutex<HashMap<String, Cursor>>,
    /// Injected faults.
    pub faults: RwLock<Faults>,
    /// Data changed since the last snapshot.
    pub dirty: AtomicBool,
    /// Bulk API batches used today (`DailyBulkApiBatches`, counted by the Bulk APIs).
    pub bulk_batches_used: AtomicU64,
    /// Bulk 2.0 query jobs created today (`DailyBulkV2QueryJobs`).
    pub bulk_query_jobs_used: AtomicU64,
    /// When the schema last changed (epoch ms, wall clock), for `If-Modified-Since`.
    pub schema_changed_ms: AtomicI64,
    /// Held by multi-request transactions (`/composite` with allOrNone) and briefly by
    /// every writer, so other clients' writes never land inside a transaction's undo log.
    txn_gate: Mutex<()>,
    cursor_seq: AtomicU64,
}

impl AppState {
    /// New state around an org.
    pub fn new(config: EmulatorConfig, org: Org) -> AppState {
        let max = config.daily_api_requests;
        AppState {
            org: RwLock::new(org),
            config,
            base_url: RwLock::new(String::new()),
            clock: Clock::default(),
            tokens: Mutex::new(Tokens::default()),
            api_used: AtomicU64::new(0),
            api_max: AtomicU64::new(max),
            calls: Mutex::new(BTreeMap::new()),
            cursors: Mutex::new(HashMap::new()),
            faults: RwLock::new(Faults::default()),
            dirty: AtomicBool::new(false),
            bulk_batches_used: AtomicU64::new(0),
            bulk_query_jobs_used: AtomicU64::new(0),
            txn_gate: Mutex::new(()),
            schema_changed_ms: AtomicI64::new(Clock::real_ms()),
            cursor_seq: AtomicU64::new(1),
        }
    }

    /// Read access to the org (a poisoned lock is recovered: the data stays usable).
    pub fn org(&self) -> RwLockReadGuard<'_, Org> {
        self.org
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Write access to the org; marks it dirty for persistence.
    pub fn org_mut(&self) -> RwLockWriteGuard<'_, Org> {
        self.dirty.store(true, Ordering::Relaxed);
        if IN_TXN.with(std::cell::Cell::get) {
            return self
                .org
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let _gate = self
            .txn_gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.org
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` (synchronous, on this thread) with other writers held off, so a
    /// multi-request transaction can roll back exactly its own changes.
    pub fn exclusive<R>(&self, f: impl FnOnce() -> R) -> R {
        if IN_TXN.with(std::cell::Cell::get) {
            return f();
        }
        let _gate = self
            .txn_gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        IN_TXN.with(|c| c.set(true));
        let _flag = TxnFlag;
        f()
    }

    /// Replaces the whole org (admin reset, snapshot reload).
    pub fn replace_org(&self, org: Org) {
        *self.org_mut() = org;
        self.cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Write context from the clock.
    /// Salesforce stores audit datetimes with whole seconds, so writes see a truncated clock.
    pub fn ctx(&self) -> WriteCtx {
        let now = self.clock.now_ms();
        WriteCtx {
            now: now - now.rem_euclid(1000),
        }
    }

    /// The base URL.
    pub fn base(&self) -> String {
        self.base_url.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Token store.
    pub fn tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Current faults.
    pub fn faults(&self) -> Faults {
        self.faults.read().map(|f| f.clone()).unwrap_or_default()
    }

    /// Rolls the `UNABLE_TO_LOCK_ROW` dice for one record write (shared with the Bulk APIs).
    pub fn lock_fault(&self) -> bool {
        let rate = self.faults().lock_rate;
        rate > 0.0 && rand::rng().random::<f64>() < rate
    }

    /// Counts a call for `/__emulator/calls`.
    pub fn count_call(&self, key: String) {
        let mut c = self
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *c.entry(key).or_insert(0) += 1;
    }

    /// Opens a cursor; returns its locator id (`01g...`).
    pub fn open_cursor(&self, cursor: Cursor) -> String {
        let n = self.cursor_seq.fetch_add(1, Ordering::Relaxed);
        let id = crate::ids::to18(&crate::ids::make15("01g", 'A', n));
        let mut cs = self
            .cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cs.retain(|_, c| c.touched.elapsed() < Duration::from_secs(15 * 60));
        while cs.len() >= MAX_CURSORS {
            let Some(oldest) = cs
                .iter()
                .min_by_key(|(_, c)| c.touched)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            cs.remove(&oldest);
        }
        cs.insert(id.clone(), cursor);
        id
    }

    /// Access-token lifetime.
    pub fn token_ttl(&self) -> Duration {
        self.faults()
            .session_ttl_seconds
            .map_or(self.config.access_token_ttl, Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_moves() {
        let c = Clock::default();
        c.set_ms(1_000_000);
        assert!((c.now_ms() - 1_000_000).abs() < 1000);
        c.advance_ms(3_600_000);
        assert!((c.now_ms() - 4_600_000).abs() < 1000);
    }

    #[test]
    fn exclusive_is_reentrant_for_its_own_writes() {
        let st = AppState::new(
            crate::EmulatorConfig::default(),
            crate::seed::base_org("admin@ferry.local", 0),
        );
        let n = st.exclusive(|| {
            let org = st.org_mut();
            org.tables.len()
        });
        assert!(n > 0);
        drop(st.org_mut());
    }
}
