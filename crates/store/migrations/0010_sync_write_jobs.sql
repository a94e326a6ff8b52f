-- Salesforce Bulk jobs a model sync has opened and not yet seen finish. A process killed
-- while jobs run leaves them here; the sync's next run waits for them (or aborts those
-- never closed) before it looks anything up, so no job of a dead run overlaps a new one.
CREATE TABLE sync_write_jobs (
    sync_id TEXT NOT NULL REFERENCES syncs(id) ON DELETE CASCADE,
    job_id TEXT NOT NULL,
    api TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sync_id, job_id)
);
