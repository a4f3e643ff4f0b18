-- The caches stream: one row per invalidation of a named cache on the master,
-- replayed by workers so their copies of the same caches drop the keys.
-- stream_id is allocated by the master's StreamIdGenerator (one row per id).
CREATE TABLE cache_invalidation_stream (
    stream_id BIGINT NOT NULL PRIMARY KEY,
    cache_name TEXT NOT NULL,
    keys TEXT,                               -- JSON array of string keys; NULL: the whole cache
    invalidation_ts BIGINT NOT NULL
);
CREATE INDEX cache_invalidation_stream_ts ON cache_invalidation_stream (invalidation_ts);
