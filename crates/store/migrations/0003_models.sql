-- Models: a table, view or query of a source connection, with its discovered fields.
-- JSON documents are stored as text; timestamps are epoch milliseconds (UTC).
CREATE TABLE models (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    configuration TEXT NOT NULL,
    fields TEXT NOT NULL,
    identifier TEXT,
    tracking_columns TEXT NOT NULL,
    labels TEXT NOT NULL,
    additional_fields TEXT NOT NULL,
    relations TEXT NOT NULL,
    policies TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX models_org ON models(organization_id, updated_at);
CREATE INDEX models_connection ON models(connection_id);
