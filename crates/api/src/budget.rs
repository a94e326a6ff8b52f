//! A connection's daily Salesforce API budget, backed by the store so that it survives
//! restarts and is shared by every Ferry process.
//!
//! Every call is counted in a rolling 24-hour window (`api_calls_last_24_hours`); with
//! `enforce_api_limits` the reservation fails once `daily_api_calls` would be exceeded, so
//! the call is never made.

use std::sync::Arc;

use chrono::Utc;
use ferry_salesforce::{BudgetExceeded, BudgetKind, CallBudget};
use ferry_store::DynStore;
use uuid::Uuid;

/// The budget of one saved connection.
#[derive(Clone)]
pub struct ConnectionBudget {
    store: DynStore,
    connection_id: Uuid,
    cap: Option<i64>,
}

impl std::fmt::Debug for ConnectionBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionBudget")
            .field("connection_id", &self.connection_id)
            .field("cap", &self.cap)
            .finish()
    }
}

impl ConnectionBudget {
    /// A budget for `connection_id`; `cap` is `daily_api_calls` when `enforce_api_limits`.
    pub fn new(store: DynStore, connection_id: Uuid, cap: Option<i64>) -> Arc<Self> {
        Arc::new(ConnectionBudget {
            store,
            connection_id,
            cap,
        })
    }

    /// The cap a Salesforce configuration asks for.
    pub fn cap_from_config(config: &serde_json::Map<String, serde_json::Value>) -> Option<i64> {
        let enforce = config
            .get("enforce_api_limits")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        if !enforce {
            return None;
        }
        config
            .get("daily_api_calls")
            .and_then(serde_json::Value::as_i64)
    }
}

#[async_trait::async_trait]
impl CallBudget for ConnectionBudget {
    async fn try_acquire(&self, calls: u64) -> Result<(), BudgetExceeded> {
        let requested = i64::try_from(calls).unwrap_or(i64::MAX);
        let now = Utc::now();
        let refused = |used: i64| BudgetExceeded {
            kind: BudgetKind::ConnectionCap,
            used: u64::try_from(used).unwrap_or(0),
            limit: self
                .cap
                .and_then(|cap| u64::try_from(cap).ok())
                .unwrap_or(0),
            requested: calls,
        };
        match self
            .store
            .reserve_api_calls(
                self.connection_id,
                now,
                requested,
                self.cap,
                now - chrono::Duration::hours(24),
            )
            .await
        {
            Ok(reservation) if reservation.granted => Ok(()),
            Ok(reservation) => Err(refused(reservation.used)),
            Err(error) => {
                // Fail closed: a budget that cannot be checked must not be exceeded.
                tracing::error!(%error, connection_id = %self.connection_id, "api budget reservation failed");
                Err(refused(0))
            }
        }
    }
}
