-- Record-log chunks are stored compressed: `packed` holds the chunk's text (its lines
-- joined by `\n`) as an LZ4 block preceded by the text's length (4 bytes, little-endian),
-- and `line` is then empty. Chunks written before, and short ones, keep their text in
-- `line` with `packed` NULL.
ALTER TABLE sync_execution_records ADD COLUMN packed BLOB;
