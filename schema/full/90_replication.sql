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

-- How far cache_invalidation_stream has been pruned: a worker catching up from below this
-- position has missed invalidations and clears its caches instead. One row.
CREATE TABLE cache_invalidation_pruned (
    lock TEXT NOT NULL DEFAULT 'X' UNIQUE,   -- at most one row
    up_to BIGINT NOT NULL
);

-- The federation_outbox stream: PDUs (and EDUs) that code on the master hands to the
-- outbound sender when a federation_sender worker sends (e.g. a remote join served by
-- us must reach the room's other servers). Written by the master, drained by the sender.
CREATE TABLE federation_outbox (
    stream_id BIGINT NOT NULL PRIMARY KEY,
    destinations TEXT NOT NULL,              -- JSON array of server names
    event_id TEXT,                           -- a PDU to send, or
    edu TEXT                                 -- JSON {"edu_type", "content", "key"}
);
