-- The job queue: every execution (model sync, bulk sync) is a job that workers claim with a
-- lease. `status`: queued -> running (leased) -> done; a running job whose lease expired is
-- claimable again (takeover). `execution_id` is the execution of the current attempt.
-- Timestamps are epoch milliseconds (UTC).
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    heartbeat_at BIGINT,
    attempts BIGINT NOT NULL,
    outcome TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_claimable ON jobs(status, created_at);
CREATE INDEX jobs_execution ON jobs(execution_id);

-- The Salesforce connections a job uses (the per-connection concurrency cap counts them).
CREATE TABLE job_connections (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL,
    PRIMARY KEY (job_id, connection_id)
);
CREATE INDEX job_connections_connection ON job_connections(connection_id);

-- One row per connection that ever had a job: claims lock it (UPDATE) so two workers
-- cannot both take the last free slot of a connection.
CREATE TABLE job_connection_locks (
    connection_id TEXT PRIMARY KEY,
    claims BIGINT NOT NULL
);
