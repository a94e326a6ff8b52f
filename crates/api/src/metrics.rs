//! `GET /metrics`: Prometheus text exposition (format 0.0.4), served on the API listener
//! without authentication (like `/healthz`; it carries counts and connection ids, no
//! names or secrets — keep the listener private or filter `/metrics` at the proxy if that
//! matters).
//!
//! Two sources:
//!
//! - the store, read at scrape time, so every process reports the same cluster-wide
//!   figures whichever one the scraper reaches: model-sync and bulk-sync executions by
//!   status, records by outcome,
//!   jobs by kind and status (queue depth), Salesforce API calls in the last 24 hours and
//!   the remaining daily budget per connection;
//! - this process, kept in a small hand-rolled registry ([`Metrics`]): job durations as a
//!   histogram per kind and outcome, and the jobs running here.
//!
//! `ferry serve` serves it on the API listener; `ferry worker` on its own listener
//! (`--metrics-listen`, [`router`]), with the same families — a worker's job durations
//! and running jobs are its own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::AppState;
use crate::error::ApiResult;
use crate::routes::{ApiRoutes, Operation};

/// Upper bounds (seconds) of the job-duration histogram buckets.
const DURATION_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

/// Per-process metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    durations: Mutex<BTreeMap<(String, String), Histogram>>,
    running: AtomicI64,
}

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative; cumulated when rendered).
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Metrics {
    /// A job started running in this process.
    pub fn job_started(&self) {
        self.running.fetch_add(1, Ordering::Relaxed);
    }

    /// A job of `kind` ran for `elapsed` and ended with `outcome` (`completed`, `failed`,
    /// `canceled`, `released`, ...).
    pub fn job_finished(&self, kind: &str, outcome: &str, elapsed: Duration) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        let mut durations = self
            .durations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let histogram = durations
            .entry((kind.to_string(), outcome.to_string()))
            .or_default();
        if let Some(index) = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            histogram.buckets[index] += 1;
        }
        histogram.count += 1;
        histogram.sum_seconds += seconds;
    }

    /// Jobs running in this process.
    pub fn running(&self) -> i64 {
        self.running.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        let durations = self
            .durations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        header(
            out,
            "ferry_job_duration_seconds",
            "histogram",
            "Durations of jobs run by this process, by kind and outcome.",
        );
        for ((kind, outcome), histogram) in &durations {
            let labels = format!("kind=\"{}\",outcome=\"{}\"", escape(kind), escape(outcome));
            let mut cumulative = 0;
            for (bound, count) in DURATION_BUCKETS.iter().zip(histogram.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "ferry_job_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "ferry_job_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "ferry_job_duration_seconds_sum{{{labels}}} {}",
                histogram.sum_seconds
            );
            let _ = writeln!(
                out,
                "ferry_job_duration_seconds_count{{{labels}}} {}",
                histogram.count
            );
        }
        header(
            out,
            "ferry_jobs_running_here",
            "gauge",
            "Jobs running in this process.",
        );
        let _ = writeln!(out, "ferry_jobs_running_here {}", self.running());
    }
}

/// Routes of this module.
pub fn routes() -> ApiRoutes {
    ApiRoutes::new().add(
        Operation::new(
            "get",
            "/metrics",
            "meta",
            "Prometheus metrics (text exposition format)",
        )
        .public()
        .bare_response(json!({"type": "string"})),
        get(metrics),
    )
}

/// `GET /metrics` alone, for a process that serves no API (`ferry worker
/// --metrics-listen`); other paths answer 404.
pub fn router(state: AppState) -> axum::Router {
    let (router, _) = routes().into_router();
    router.with_state(state)
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let snapshot = state
        .store()
        .queue_snapshot(chrono::Utc::now() - chrono::Duration::hours(24))
        .await?;
    let mut out = String::new();
    header(
        &mut out,
        "ferry_sync_executions",
        "gauge",
        "Model-sync executions in the store, by status.",
    );
    for (status, count) in &snapshot.executions {
        let _ = writeln!(
            out,
            "ferry_sync_executions{{status=\"{}\"}} {count}",
            escape(status)
        );
    }
    header(
        &mut out,
        "ferry_bulk_sync_executions",
        "gauge",
        "Bulk-sync executions in the store, by status.",
    );
    for (status, count) in &snapshot.bulk_executions {
        let _ = writeln!(
            out,
            "ferry_bulk_sync_executions{{status=\"{}\"}} {count}",
            escape(status)
        );
    }
    header(
        &mut out,
        "ferry_sync_records_total",
        "counter",
        "Records written (or failed) by model-sync executions, by outcome.",
    );
    for (outcome, count) in &snapshot.records {
        let _ = writeln!(
            out,
            "ferry_sync_records_total{{outcome=\"{outcome}\"}} {count}"
        );
    }
    header(
        &mut out,
        "ferry_jobs",
        "gauge",
        "Jobs in the queue, by kind and status (queued, running, done).",
    );
    let mut queued = 0;
    for (kind, status, count) in &snapshot.jobs {
        if status == "queued" {
            queued += count;
        }
        let _ = writeln!(
            out,
            "ferry_jobs{{kind=\"{}\",status=\"{}\"}} {count}",
            escape(kind),
            escape(status)
        );
    }
    header(
        &mut out,
        "ferry_job_queue_depth",
        "gauge",
        "Jobs waiting for a worker.",
    );
    let _ = writeln!(out, "ferry_job_queue_depth {queued}");
    header(
        &mut out,
        "ferry_salesforce_api_calls",
        "gauge",
        "Metered Salesforce API calls per connection in the last 24 hours.",
    );
    for (connection_id, calls, _) in &snapshot.salesforce {
        let _ = writeln!(
            out,
            "ferry_salesforce_api_calls{{connection_id=\"{connection_id}\"}} {calls}"
        );
    }
    header(
        &mut out,
        "ferry_salesforce_api_budget_remaining",
        "gauge",
        "Calls left in the daily budget of connections that enforce one (enforce_api_limits).",
    );
    for (connection_id, calls, configuration) in &snapshot.salesforce {
        let cap = configuration
            .as_object()
            .and_then(crate::budget::ConnectionBudget::cap_from_config);
        if let Some(cap) = cap {
            let _ = writeln!(
                out,
                "ferry_salesforce_api_budget_remaining{{connection_id=\"{connection_id}\"}} {}",
                (cap - calls).max(0)
            );
        }
    }
    state.metrics().render(&mut out);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let metrics = Metrics::default();
        metrics.job_started();
        metrics.job_started();
        metrics.job_finished("model_sync", "completed", Duration::from_millis(300));
        assert_eq!(metrics.running(), 1);
        metrics.job_finished("model_sync", "completed", Duration::from_secs(4));
        let mut out = String::new();
        metrics.render(&mut out);
        let labels = "kind=\"model_sync\",outcome=\"completed\"";
        assert!(out.contains(&format!(
            "ferry_job_duration_seconds_bucket{{{labels},le=\"0.1\"}} 0"
        )));
        assert!(out.contains(&format!(
            "ferry_job_duration_seconds_bucket{{{labels},le=\"0.5\"}} 1"
        )));
        assert!(out.contains(&format!(
            "ferry_job_duration_seconds_bucket{{{labels},le=\"5\"}} 2"
        )));
        assert!(out.contains(&format!(
            "ferry_job_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 2"
        )));
        assert!(out.contains(&format!("ferry_job_duration_seconds_count{{{labels}}} 2")));
        assert!(out.contains("ferry_jobs_running_here 0"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
