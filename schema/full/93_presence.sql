-- The latest presence of each user: the presence stream (each change replaces
-- the row and takes a new stream id).
CREATE TABLE presence (
    user_id TEXT NOT NULL PRIMARY KEY,
    stream_id BIGINT NOT NULL,
    state TEXT NOT NULL,                     -- online, unavailable, offline
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,          -- last pro-active event (ms)
    last_user_sync_ts BIGINT NOT NULL,       -- last time a client of the user was syncing (ms)
    currently_active BOOLEAN NOT NULL
);
CREATE UNIQUE INDEX presence_stream ON presence (stream_id);
