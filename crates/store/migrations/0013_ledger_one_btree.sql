-- SQLite: the ledger becomes one B-tree ordered by its key (`WITHOUT ROWID`). As a rowid
-- table it was two — the rows, and an index repeating `sync_id` and `identity` — so every
-- entry was written twice over. Same columns, same key, same queries; the entries are
-- copied over. (PostgreSQL keeps its table: its migration 13 changes nothing.)
CREATE TABLE sync_ledger_one_btree (
    sync_id TEXT NOT NULL REFERENCES syncs(id) ON DELETE CASCADE,
    identity TEXT NOT NULL,
    hash TEXT,
    record_id TEXT,
    outcome TEXT NOT NULL,
    error_code TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (sync_id, identity)
) WITHOUT ROWID;
INSERT INTO sync_ledger_one_btree
    (sync_id, identity, hash, record_id, outcome, error_code, updated_at)
SELECT sync_id, identity, hash, record_id, outcome, error_code, updated_at FROM sync_ledger;
DROP TABLE sync_ledger;
ALTER TABLE sync_ledger_one_btree RENAME TO sync_ledger;
