-- Bulk syncs (ELT): the BulkSyncRequest document as JSON plus the columns lists filter on;
-- the schemas (source objects) selected per sync; schedules (one default plus additional
-- ones); executions with one row per schema; execution log lines.
-- Timestamps are epoch milliseconds (UTC).
CREATE TABLE bulk_syncs (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    source_connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    destination_connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    mode TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    document TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX bulk_syncs_org ON bulk_syncs(organization_id, updated_at);

CREATE TABLE bulk_sync_schemas (
    sync_id TEXT NOT NULL REFERENCES bulk_syncs(id) ON DELETE CASCADE,
    schema_id TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    user_output_name TEXT,
    partition_key TEXT,
    tracking_field TEXT,
    data_cutoff_timestamp BIGINT,
    disable_data_cutoff BOOLEAN NOT NULL,
    fields TEXT NOT NULL,
    filters TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (sync_id, schema_id)
);

CREATE TABLE bulk_sync_schedules (
    id TEXT PRIMARY KEY,
    sync_id TEXT NOT NULL REFERENCES bulk_syncs(id) ON DELETE CASCADE,
    is_default BOOLEAN NOT NULL,
    frequency TEXT NOT NULL,
    minute TEXT,
    hour TEXT,
    day_of_week TEXT,
    day_of_month TEXT,
    month TEXT,
    selective_mode TEXT,
    sync_mode TEXT,
    schemas TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX bulk_sync_schedules_sync ON bulk_sync_schedules(sync_id, created_at);
-- Exactly one default schedule per sync.
CREATE UNIQUE INDEX bulk_sync_schedules_one_default ON bulk_sync_schedules(sync_id)
    WHERE is_default;

CREATE TABLE bulk_sync_executions (
    id TEXT PRIMARY KEY,
    sync_id TEXT NOT NULL REFERENCES bulk_syncs(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    status_message TEXT NOT NULL,
    execution_type TEXT NOT NULL,
    fetch_mode TEXT NOT NULL,
    output_disposition TEXT NOT NULL,
    is_resync BOOLEAN NOT NULL,
    is_partial BOOLEAN NOT NULL,
    is_test BOOLEAN NOT NULL,
    record_count BIGINT NOT NULL,
    error_count BIGINT NOT NULL,
    warning_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    updated_at BIGINT NOT NULL,
    -- Refreshed every few seconds by the process running the execution; a stale one
    -- means that process stopped.
    heartbeat_at BIGINT
);
CREATE INDEX bulk_sync_executions_sync ON bulk_sync_executions(sync_id, created_at);
-- At most one unfinished execution per bulk sync: a concurrent start fails here (409).
CREATE UNIQUE INDEX bulk_sync_executions_one_active ON bulk_sync_executions(sync_id)
    WHERE status IN ('created', 'scheduled', 'running', 'exporting', 'processing', 'canceling');

CREATE TABLE bulk_sync_schema_executions (
    execution_id TEXT NOT NULL REFERENCES bulk_sync_executions(id) ON DELETE CASCADE,
    schema_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    output_name TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT NOT NULL,
    record_count BIGINT NOT NULL,
    delete_count BIGINT NOT NULL,
    error_count BIGINT NOT NULL,
    warning_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (execution_id, schema_id)
);

CREATE TABLE bulk_sync_execution_logs (
    execution_id TEXT NOT NULL REFERENCES bulk_sync_executions(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
