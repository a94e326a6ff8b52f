-- PostgreSQL has no counterpart of SQLite's migration 13 (a heap table and its primary-key
-- index are how PostgreSQL stores any table): nothing changes.
SELECT 1;
