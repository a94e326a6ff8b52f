//! The daily API call budget.
//!
//! Every request the client sends to the instance's APIs (REST, Tooling, Bulk 2.0, Bulk 1.0)
//! first asks a [`CallBudget`] for permission: [`CallBudget::try_acquire`] runs *before*
//! the HTTP request, so work that would exceed the cap stops without reaching Salesforce.
//! Retries and the replay after a token refresh are separate requests and are counted
//! separately. OAuth calls (token, userinfo) and the unauthenticated version listing
//! (`GET /services/data`) do not consume Salesforce's `DailyApiRequests` and are not
//! counted.
//!
//! Each response's `Sforce-Limit-Info: api-usage=N/M` header is fed to
//! [`CallBudget::record_limit_info`] and to the client's [`OrgUsageGuard`], which refuses
//! calls once the org-wide remaining allowance drops below a configurable floor, so Ferry
//! stops before Salesforce answers `REQUEST_LIMIT_EXCEEDED`.
//!
//! The API layer plugs in a store-backed rolling 24-hour counter; [`InMemoryBudget`] is the
//! same idea held in memory (tests, tools) and [`Unlimited`] counts nothing.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why a call was refused before it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetKind {
    /// The connection's own daily cap (`daily_api_calls`).
    ConnectionCap,
    /// The org-wide allowance seen in `Sforce-Limit-Info` is nearly spent.
    OrgFloor,
}

/// A call refused by the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct BudgetExceeded {
    /// Which limit refused the call.
    pub kind: BudgetKind,
    /// Calls already used in the window.
    pub used: u64,
    /// The limit.
    pub limit: u64,
    /// Calls the refused work asked for.
    pub requested: u64,
}

impl BudgetExceeded {
    fn describe(&self) -> String {
        match self.kind {
            BudgetKind::ConnectionCap => format!(
                "daily Salesforce API budget exhausted: {} of {} calls used in the last 24 hours, {} more requested; the call was not made (raise daily_api_calls or wait)",
                self.used, self.limit, self.requested
            ),
            BudgetKind::OrgFloor => format!(
                "the Salesforce org has used {} of its {} daily API requests; Ferry stops below its safety floor so the org keeps headroom (the call was not made)",
                self.used, self.limit
            ),
        }
    }
}

/// Decides whether API calls may be made, and learns the org-wide usage.
#[async_trait::async_trait]
pub trait CallBudget: Send + Sync + std::fmt::Debug {
    /// Reserves `calls` calls, or refuses. Called before each HTTP request.
    async fn try_acquire(&self, calls: u64) -> Result<(), BudgetExceeded>;

    /// The org-wide usage from a `Sforce-Limit-Info` header (`used` of `max`).
    async fn record_limit_info(&self, used: u64, max: u64) {
        let _ = (used, max);
    }
}

/// A budget that never refuses.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unlimited;

#[async_trait::async_trait]
impl CallBudget for Unlimited {
    async fn try_acquire(&self, _calls: u64) -> Result<(), BudgetExceeded> {
        Ok(())
    }
}

/// A rolling 24-hour counter with a cap, kept in memory. Calls are grouped in per-minute
/// buckets (memory stays bounded whatever the cap), so a call leaves the window up to a
/// minute early.
#[derive(Debug)]
pub struct InMemoryBudget {
    cap: Option<u64>,
    window: Duration,
    buckets: Mutex<VecDeque<(Instant, u64)>>,
    last_org_usage: Mutex<Option<(u64, u64)>>,
    acquired_total: AtomicU64,
}

impl InMemoryBudget {
    /// A budget allowing `cap` calls per rolling 24 hours (`None`: count, never refuse).
    pub fn new(cap: Option<u64>) -> Self {
        Self::with_window(cap, Duration::from_secs(24 * 3600))
    }

    /// Same with a custom window (tests).
    pub fn with_window(cap: Option<u64>, window: Duration) -> Self {
        InMemoryBudget {
            cap,
            window,
            buckets: Mutex::new(VecDeque::new()),
            last_org_usage: Mutex::new(None),
            acquired_total: AtomicU64::new(0),
        }
    }

    /// Calls counted in the current window.
    pub fn used(&self) -> u64 {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::expire(&mut buckets, self.window, Instant::now());
        buckets.iter().map(|(_, n)| n).sum()
    }

    /// Calls ever granted by this budget.
    pub fn acquired_total(&self) -> u64 {
        self.acquired_total.load(Ordering::Relaxed)
    }

    /// The last org-wide usage reported through [`CallBudget::record_limit_info`].
    pub fn last_org_usage(&self) -> Option<(u64, u64)> {
        *self
            .last_org_usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn expire(buckets: &mut VecDeque<(Instant, u64)>, window: Duration, now: Instant) {
        while let Some((at, _)) = buckets.front() {
            if now.duration_since(*at) >= window {
                buckets.pop_front();
            } else {
                break;
            }
        }
    }
}

#[async_trait::async_trait]
impl CallBudget for InMemoryBudget {
    async fn try_acquire(&self, calls: u64) -> Result<(), BudgetExceeded> {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::expire(&mut buckets, self.window, now);
        let used: u64 = buckets.iter().map(|(_, n)| n).sum();
        if let Some(cap) = self.cap
            && used.saturating_add(calls) > cap
        {
            return Err(BudgetExceeded {
                kind: BudgetKind::ConnectionCap,
                used,
                limit: cap,
                requested: calls,
            });
        }
        match buckets.back_mut() {
            Some((at, n)) if now.duration_since(*at) < Duration::from_secs(60) => *n += calls,
            _ => buckets.push_back((now, calls)),
        }
        self.acquired_total.fetch_add(calls, Ordering::Relaxed);
        Ok(())
    }

    async fn record_limit_info(&self, used: u64, max: u64) {
        *self
            .last_org_usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((used, max));
    }
}

/// Parses `api-usage=N/M` anywhere in a `Sforce-Limit-Info` value (an unanchored match, so
/// `api-usage=25/15000; per-app-api-usage=17/250(appName=x)` gives `(25, 15000)`).
pub fn parse_limit_info(value: &str) -> Option<(u64, u64)> {
    let mut rest = value;
    while let Some(at) = rest.find("api-usage=") {
        // Skip `per-app-api-usage=`: the org-wide counter is the one not preceded by `-`.
        let preceded_by_dash = at > 0 && rest.as_bytes()[at - 1] == b'-';
        let after = &rest[at + "api-usage=".len()..];
        if !preceded_by_dash && let Some(pair) = parse_pair(after) {
            return Some(pair);
        }
        rest = after;
    }
    None
}

fn parse_pair(text: &str) -> Option<(u64, u64)> {
    let used_len = text.bytes().take_while(u8::is_ascii_digit).count();
    let used = text.get(..used_len)?.parse().ok()?;
    let rest = text.get(used_len..)?.strip_prefix('/')?;
    let max_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let max = rest.get(..max_len)?.parse().ok()?;
    Some((used, max))
}

/// Refuses calls when the org-wide usage seen in `Sforce-Limit-Info` leaves less than a
/// fraction of the daily maximum.
#[derive(Debug)]
pub struct OrgUsageGuard {
    min_remaining_fraction: f64,
    last: Mutex<Option<(u64, u64)>>,
}

impl OrgUsageGuard {
    /// A guard refusing calls once `remaining < max * min_remaining_fraction`
    /// (`0.0` disables it; values are clamped to `0.0..=1.0`).
    pub fn new(min_remaining_fraction: f64) -> Self {
        let fraction = if min_remaining_fraction.is_finite() {
            min_remaining_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        OrgUsageGuard {
            min_remaining_fraction: fraction,
            last: Mutex::new(None),
        }
    }

    /// Records a header reading.
    pub fn record(&self, used: u64, max: u64) {
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((used, max));
    }

    /// The last reading.
    pub fn last(&self) -> Option<(u64, u64)> {
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks the floor before a call.
    pub fn check(&self) -> Result<(), BudgetExceeded> {
        let Some((used, max)) = self.last() else {
            return Ok(());
        };
        if max == 0 || self.min_remaining_fraction <= 0.0 {
            return Ok(());
        }
        let remaining = max.saturating_sub(used);
        let floor = (max as f64 * self.min_remaining_fraction).ceil() as u64;
        if remaining < floor.max(1) {
            return Err(BudgetExceeded {
                kind: BudgetKind::OrgFloor,
                used,
                limit: max,
                requested: 1,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_info_parsing_is_unanchored() {
        assert_eq!(parse_limit_info("api-usage=25/15000"), Some((25, 15000)));
        assert_eq!(
            parse_limit_info(
                "api-usage=25/15000; per-app-api-usage=17/250(appName=sample-connected-app)"
            ),
            Some((25, 15000))
        );
        assert_eq!(
            parse_limit_info("per-app-api-usage=17/250(appName=x); api-usage=30/100"),
            Some((30, 100))
        );
        assert_eq!(parse_limit_info(" api-usage=1/2 "), Some((1, 2)));
        assert_eq!(parse_limit_info("api-usage=/2"), None);
        assert_eq!(parse_limit_info("api-usage=3"), None);
        assert_eq!(parse_limit_info("per-app-api-usage=17/250"), None);
        assert_eq!(parse_limit_info(""), None);
        assert_eq!(
            parse_limit_info("api-usage=99999999999999999999999/1"),
            None
        );
    }

    #[tokio::test]
    async fn in_memory_budget_caps_calls() {
        let budget = InMemoryBudget::new(Some(3));
        for _ in 0..3 {
            budget.try_acquire(1).await.expect("within the cap");
        }
        let refused = budget.try_acquire(1).await.expect_err("over the cap");
        assert_eq!(refused.kind, BudgetKind::ConnectionCap);
        assert_eq!((refused.used, refused.limit, refused.requested), (3, 3, 1));
        assert!(refused.to_string().contains("3 of 3 calls"));
        assert_eq!(budget.used(), 3);
        assert_eq!(budget.acquired_total(), 3);
        budget.record_limit_info(5, 10).await;
        assert_eq!(budget.last_org_usage(), Some((5, 10)));
    }

    #[tokio::test]
    async fn in_memory_budget_window_rolls() {
        let budget = InMemoryBudget::with_window(Some(1), Duration::from_millis(30));
        budget.try_acquire(1).await.expect("first");
        assert!(budget.try_acquire(1).await.is_err());
        tokio::time::sleep(Duration::from_millis(50)).await;
        budget.try_acquire(1).await.expect("window rolled");
    }

    #[test]
    fn org_floor() {
        let guard = OrgUsageGuard::new(0.01);
        assert!(guard.check().is_ok());
        guard.record(9_800, 10_000);
        assert!(guard.check().is_ok());
        guard.record(9_901, 10_000);
        let refused = guard.check().expect_err("below 1%");
        assert_eq!(refused.kind, BudgetKind::OrgFloor);
        guard.record(10, 10);
        assert!(guard.check().is_err());
        let disabled = OrgUsageGuard::new(0.0);
        disabled.record(10, 10);
        assert!(disabled.check().is_ok());
    }
}
