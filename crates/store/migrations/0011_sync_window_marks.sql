-- Read windows of a model sync whose rows the target is known to hold as read: the
-- fingerprint of the window's source rows (and of the sync) when every row of it was
-- confirmed in the ledger. A run finding a window with the same fingerprint skips it
-- without looking its rows up. Written at the end of a run that completed; removed when
-- a run starts writing, and with the ledger.
CREATE TABLE sync_window_marks (
    sync_id TEXT NOT NULL REFERENCES syncs(id) ON DELETE CASCADE,
    window_no BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (sync_id, window_no)
);
