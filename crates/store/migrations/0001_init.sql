-- Ferry metadata store, initial schema (SQLite; PostgreSQL gets BYTEA for BLOB). Timestamps are epoch milliseconds (UTC).
CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    configuration TEXT NOT NULL,
    secrets BLOB,
    status TEXT NOT NULL,
    status_error TEXT,
    healthcheck_interval TEXT,
    policies TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX connections_org ON connections(organization_id, created_at);

-- Salesforce (and other metered) API calls made on a connection, bucketed per minute.
CREATE TABLE connection_api_calls (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    bucket_start BIGINT NOT NULL,
    calls BIGINT NOT NULL,
    PRIMARY KEY (connection_id, bucket_start)
);

-- Resources that use a connection (models, syncs, bulk syncs). Later resources register
-- themselves here so a connection cannot be deleted from under them.
CREATE TABLE connection_dependents (
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    dependent_kind TEXT NOT NULL,
    dependent_id TEXT NOT NULL,
    dependent_name TEXT NOT NULL,
    PRIMARY KEY (connection_id, dependent_kind, dependent_id)
);

CREATE TABLE idempotency_records (
    organization_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    response_status INTEGER,
    response_content_type TEXT,
    response_body BLOB,
    created_at BIGINT NOT NULL,
    completed_at BIGINT,
    PRIMARY KEY (organization_id, idempotency_key)
);
CREATE INDEX idempotency_created ON idempotency_records(created_at);
