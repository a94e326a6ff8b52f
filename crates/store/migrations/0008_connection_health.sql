-- When the periodic health check last ran for a connection (epoch ms; NULL: never, the
-- connection's own create/update check counts until then).
ALTER TABLE connections ADD COLUMN last_health_check_at BIGINT;
