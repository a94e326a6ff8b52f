-- Connection Proxy calls per connection and second: the sliding per-minute rate limit and the
-- 24-hour statistics, shared by every Ferry process using the store.
CREATE TABLE proxy_calls (
    connection_id TEXT NOT NULL,
    bucket_start BIGINT NOT NULL,
    calls BIGINT NOT NULL,
    ok BIGINT NOT NULL DEFAULT 0,
    client_errors BIGINT NOT NULL DEFAULT 0,
    server_errors BIGINT NOT NULL DEFAULT 0,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, bucket_start)
);
