//! Periodic connection health checks (`healthcheck_interval`).
//!
//! Every connection is re-checked once its interval has passed since its last check (the
//! create/update check counts as the first): the same check `POST /api/connections/test`
//! runs, with metered calls counted against the connection's daily budget. The outcome
//! becomes the connection's `status`/`status_error`, so a revoked token or a dropped
//! database shows up without anyone opening the connection. Connections still waiting for
//! an OAuth authorization are left alone (they need a person, not a retry). A check the
//! daily budget refuses changes nothing.
//!
//! Processes sharing a store claim each check in the store first, so a connection is
//! checked once per interval however many `ferry` processes run the loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_core::duration::{format_go_duration, parse_go_duration};
use ferry_salesforce::{BudgetExceeded, CallBudget};
use ferry_store::HealthCheckCandidate;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::connections::{budget_for, stored_configuration};
use crate::error::{ApiError, ApiResult};

/// The interval of a connection without `healthcheck_interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

/// The shortest interval accepted (each Salesforce check costs API calls).
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);

/// How often the loop looks for due checks.
pub const TICK: Duration = Duration::from_secs(30);

/// Validates a request's `healthcheck_interval`: absent or empty means the default;
/// otherwise a Go-style duration of at least [`MIN_INTERVAL`], stored as Go prints it.
pub fn normalize_interval(value: Option<String>) -> ApiResult<Option<String>> {
    let Some(text) = value.filter(|text| !text.trim().is_empty()) else {
        return Ok(None);
    };
    let invalid = |message: String| {
        ApiError::unprocessable(format!("healthcheck_interval: {message}"))
            .with_metadata("field", "healthcheck_interval")
    };
    let interval = parse_go_duration(&text).map_err(|error| invalid(error.to_string()))?;
    if interval < MIN_INTERVAL {
        return Err(invalid(format!(
            "'{text}' is shorter than the minimum of {} (leave it empty for the default, {})",
            format_go_duration(MIN_INTERVAL),
            format_go_duration(DEFAULT_INTERVAL)
        )));
    }
    Ok(Some(format_go_duration(interval)))
}

/// The interval a stored connection is checked at.
fn interval_of(stored: Option<&str>) -> Duration {
    stored
        .and_then(|text| parse_go_duration(text).ok())
        .filter(|interval| *interval >= MIN_INTERVAL)
        .unwrap_or(DEFAULT_INTERVAL)
}

/// Whether a connection's check is due at `now`.
fn is_due(candidate: &HealthCheckCandidate, now: DateTime<Utc>) -> bool {
    let connection = &candidate.connection;
    if connection.status == "unauthorized" {
        return false;
    }
    let last = candidate
        .last_checked_at
        .map_or(connection.updated_at, |at| at.max(connection.updated_at));
    let interval =
        chrono::Duration::from_std(interval_of(connection.healthcheck_interval.as_deref()))
            .unwrap_or_else(|_| chrono::Duration::hours(1));
    now >= last + interval
}

/// A budget that remembers whether it refused a call.
#[derive(Debug)]
struct Observed {
    inner: Arc<dyn CallBudget>,
    refused: AtomicBool,
}

#[async_trait::async_trait]
impl CallBudget for Observed {
    async fn try_acquire(&self, calls: u64) -> Result<(), BudgetExceeded> {
        let outcome = self.inner.try_acquire(calls).await;
        if outcome.is_err() {
            self.refused.store(true, Ordering::SeqCst);
        }
        outcome
    }
}

/// Runs every due check once. Returns how many connections were checked.
pub async fn check_due_connections(state: &AppState, now: DateTime<Utc>) -> ApiResult<usize> {
    let candidates = state.store().health_check_candidates().await?;
    let mut checked = 0;
    for candidate in candidates.into_iter().filter(|c| is_due(c, now)) {
        let connection = &candidate.connection;
        let Some(connector) = state.registry().get(&connection.type_id).cloned() else {
            continue;
        };
        if !state
            .store()
            .claim_health_check(connection.id, candidate.last_checked_at, now)
            .await?
        {
            continue;
        }
        let configuration = match stored_configuration(state, connection) {
            Ok(configuration) => configuration,
            Err(error) => {
                tracing::warn!(connection_id = %connection.id, %error, "health check: configuration unreadable");
                continue;
            }
        };
        let budget = Arc::new(Observed {
            inner: budget_for(state, connection.id, &configuration),
            refused: AtomicBool::new(false),
        });
        let outcome = connector
            .check_with_budget(&Value::Object(configuration), budget.clone())
            .await;
        checked += 1;
        if budget.refused.load(Ordering::SeqCst) {
            tracing::info!(connection_id = %connection.id, "health check skipped: daily API budget used up");
            continue;
        }
        let (status, error) = match outcome {
            Ok(health) => (health.status.as_str().to_string(), health.message),
            Err(error) => ("failed".to_string(), Some(error.message)),
        };
        if status != connection.status {
            tracing::info!(connection_id = %connection.id, from = %connection.status, to = %status, "connection health changed");
        }
        state
            .store()
            .record_connection_health(
                connection.id,
                connection.updated_at,
                &status,
                error.as_deref(),
            )
            .await?;
    }
    Ok(checked)
}

/// The loop `ferry serve` runs until shutdown.
pub async fn run_health_checks(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(error) = check_due_connections(&state, Utc::now()).await {
                    tracing::warn!(%error, "connection health checks failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_normalized_and_bounded() {
        assert_eq!(normalize_interval(None).unwrap(), None);
        assert_eq!(normalize_interval(Some(" ".into())).unwrap(), None);
        assert_eq!(
            normalize_interval(Some("90m".into())).unwrap().as_deref(),
            Some("1h30m0s")
        );
        let short = normalize_interval(Some("30s".into())).unwrap_err();
        assert!(short.to_string().contains("minimum of 1m0s"), "{short}");
        let bad = normalize_interval(Some("daily".into())).unwrap_err();
        assert!(bad.to_string().contains("healthcheck_interval"), "{bad}");
        assert!(bad.to_string().contains("e.g. 90s"), "{bad}");
    }

    #[test]
    fn stored_intervals_fall_back_to_the_default() {
        assert_eq!(interval_of(None), DEFAULT_INTERVAL);
        assert_eq!(interval_of(Some("garbage")), DEFAULT_INTERVAL);
        assert_eq!(interval_of(Some("10m0s")), Duration::from_secs(600));
    }
}
