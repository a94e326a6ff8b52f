//! Salesforce Bulk jobs of a model sync, tracked in the store while they run.
//!
//! A Bulk job keeps running in Salesforce after the process that opened it dies. If the
//! sync's next run started at once, it would look its rows up before the dead run's job
//! had written them and could create them a second time (a create keyed on a field that
//! is not an external id is not idempotent). So a run records every job as soon as
//! Salesforce gives it an id ([`JobLog::opened`]) and forgets it once its results are read
//! ([`JobLog::finished`]), and the next run first settles whatever is still recorded
//! ([`settle_leftover_jobs`]): jobs that were closed are waited for (their rows then
//! exist and the lookups find them); jobs never closed are aborted (Bulk 2.0 never runs
//! them; Bulk 1.0 batches already added are waited for first, as Salesforce processes
//! them even in an open job).

use ferry_salesforce::bulk2::PollOptions;
use ferry_salesforce::{SalesforceClient, SalesforceError};
use ferry_store::{DynStore, StoreError};
use uuid::Uuid;

/// The Bulk API a job belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobApi {
    /// Bulk API 1.0.
    Bulk1,
    /// Bulk API 2.0 ingest.
    Bulk2,
}

impl JobApi {
    fn as_str(self) -> &'static str {
        match self {
            JobApi::Bulk1 => "bulk1",
            JobApi::Bulk2 => "bulk2",
        }
    }
}

/// Records the Bulk jobs of one sync in the store.
#[derive(Clone)]
pub struct JobLog {
    store: DynStore,
    sync_id: Uuid,
}

impl std::fmt::Debug for JobLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLog")
            .field("sync_id", &self.sync_id)
            .finish_non_exhaustive()
    }
}

impl JobLog {
    /// The log of `sync_id`'s jobs.
    pub fn new(store: DynStore, sync_id: Uuid) -> JobLog {
        JobLog { store, sync_id }
    }

    /// Records a job Salesforce just created. When it cannot be recorded the job is
    /// aborted (before any data was uploaded) and the write fails.
    pub(crate) async fn opened(
        &self,
        client: &SalesforceClient,
        api: JobApi,
        job_id: &str,
    ) -> Result<(), SalesforceError> {
        let Err(error) = self
            .store
            .record_write_job(self.sync_id, api.as_str(), job_id)
            .await
        else {
            return Ok(());
        };
        let aborted = match api {
            JobApi::Bulk1 => client.abort_bulk1_job(job_id).await.map(|_| ()),
            JobApi::Bulk2 => client.abort_ingest_job(job_id).await.map(|_| ()),
        };
        if let Err(abort) = aborted {
            tracing::warn!(job_id, error = %abort, "could not abort an unrecorded bulk job");
        }
        Err(SalesforceError::Aborted(format!(
            "Ferry could not record Bulk job {job_id} in its store, so the job was aborted: \
             {error}"
        )))
    }

    /// Forgets a job whose results were read. A failure only leaves the job recorded: the
    /// next run finds it finished and forgets it then.
    pub(crate) async fn finished(&self, job_id: &str) {
        if let Err(error) = self.store.forget_write_job(self.sync_id, job_id).await {
            tracing::warn!(job_id, %error, "could not forget a finished bulk job");
        }
    }
}

/// Why leftover jobs could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// Salesforce could not be asked about a job.
    #[error("salesforce: {0}")]
    Salesforce(#[from] SalesforceError),
    /// The store failed.
    #[error("metadata store: {0}")]
    Store(#[from] StoreError),
}

/// Settles the jobs an earlier run of the sync left recorded (see the module docs) and
/// returns how many there were. A job Salesforce no longer knows is forgotten.
pub async fn settle_leftover_jobs(
    store: &DynStore,
    sync_id: Uuid,
    client: &SalesforceClient,
    poll: PollOptions,
) -> Result<usize, SettleError> {
    let jobs = store.write_jobs(sync_id).await?;
    for job in &jobs {
        let settled = match job.api.as_str() {
            "bulk1" => settle_bulk1(client, &job.job_id, poll).await,
            _ => settle_bulk2(client, &job.job_id, poll).await,
        };
        match settled {
            Ok(state) => {
                tracing::info!(job_id = %job.job_id, api = %job.api, %state,
                    "settled a bulk job left by an earlier run");
            }
            // Salesforce no longer knows the job (deleted, or from another org).
            Err(SalesforceError::Api(error)) => {
                tracing::warn!(job_id = %job.job_id, %error,
                    "a bulk job left by an earlier run could not be read; forgetting it");
            }
            Err(SalesforceError::JobFailed { state, .. }) => {
                tracing::info!(job_id = %job.job_id, %state,
                    "a bulk job left by an earlier run had ended");
            }
            Err(error) => return Err(error.into()),
        }
        store.forget_write_job(sync_id, &job.job_id).await?;
    }
    Ok(jobs.len())
}

/// A Bulk 2.0 ingest job: aborted while `Open` (no data is processed), waited for while
/// `UploadComplete`/`InProgress`. Returns its final state.
async fn settle_bulk2(
    client: &SalesforceClient,
    job_id: &str,
    poll: PollOptions,
) -> Result<String, SalesforceError> {
    let info = client.get_ingest_job(job_id).await?;
    match info.state.as_str() {
        "Open" => Ok(client.abort_ingest_job(job_id).await?.state),
        "UploadComplete" | "InProgress" => {
            Ok(client.wait_for_ingest_job(job_id, poll).await?.state)
        }
        _ => Ok(info.state),
    }
}

/// A Bulk 1.0 job: every batch is waited for (Salesforce processes batches of open jobs
/// too), then an open job is aborted so nothing more can be added. Returns its final
/// state.
async fn settle_bulk1(
    client: &SalesforceClient,
    job_id: &str,
    poll: PollOptions,
) -> Result<String, SalesforceError> {
    let info = client.get_bulk1_job(job_id).await?;
    for batch in client.list_bulk1_batches(job_id).await? {
        if matches!(batch.state.as_str(), "Queued" | "InProgress") {
            client.wait_for_bulk1_batch(job_id, &batch.id, poll).await?;
        }
    }
    if info.state == "Open" {
        return Ok(client.abort_bulk1_job(job_id).await?.state);
    }
    Ok(info.state)
}
