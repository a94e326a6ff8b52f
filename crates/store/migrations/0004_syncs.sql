-- Model syncs (reverse ETL): the SyncRequest document as JSON plus the columns lists filter
-- on; executions with their counts; per-execution record logs; and the per-sync ledger
-- (identity -> hash of the values last confirmed written, Salesforce Id, last outcome).
-- Timestamps are epoch milliseconds (UTC).
CREATE TABLE syncs (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    target_connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    target_object TEXT,
    model_ids TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    document TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX syncs_org ON syncs(organization_id, updated_at);
CREATE INDEX syncs_target ON syncs(target_connection_id);

CREATE TABLE sync_executions (
    id TEXT PRIMARY KEY,
    sync_id TEXT NOT NULL REFERENCES syncs(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    execution_type TEXT NOT NULL,
    total_count BIGINT NOT NULL,
    insert_count BIGINT NOT NULL,
    update_count BIGINT NOT NULL,
    upsert_count BIGINT NOT NULL,
    delete_count BIGINT NOT NULL,
    error_count BIGINT NOT NULL,
    warning_count BIGINT NOT NULL,
    errors TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX sync_executions_sync ON sync_executions(sync_id, created_at);
-- At most one unfinished execution per sync: a concurrent start fails on this index (409).
CREATE UNIQUE INDEX sync_executions_one_active ON sync_executions(sync_id)
    WHERE status IN ('created', 'queued', 'running', 'canceling');

CREATE TABLE sync_execution_records (
    execution_id TEXT NOT NULL REFERENCES sync_executions(id) ON DELETE CASCADE,
    log_type TEXT NOT NULL,
    seq BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (execution_id, log_type, seq)
);

CREATE TABLE sync_ledger (
    sync_id TEXT NOT NULL REFERENCES syncs(id) ON DELETE CASCADE,
    identity TEXT NOT NULL,
    hash TEXT,
    record_id TEXT,
    outcome TEXT NOT NULL,
    error_code TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (sync_id, identity)
);
