-- Pending OAuth authorizations (Salesforce browser and code connect modes).
CREATE TABLE oauth_states (
    state TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,
    auth_code TEXT UNIQUE,
    redirect_url TEXT,
    created_at BIGINT NOT NULL,
    consumed_at BIGINT
);
