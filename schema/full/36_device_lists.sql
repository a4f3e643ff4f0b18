-- The device_lists stream: one row per change of a user's devices, device keys
-- or cross-signing keys (device_id NULL: a cross-signing change).  Rows are
-- never deleted by the stream's readers, so the largest id survives restarts.
-- visible_to: NULL for a change everyone sharing a room may see; a user id for
-- a change only that user may see (their user-signing key signed user_id's
-- master key, which nobody else is shown).
CREATE TABLE device_lists_stream (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT,
    visible_to TEXT
);
CREATE INDEX device_lists_stream_id ON device_lists_stream (stream_id);
CREATE INDEX device_lists_stream_user ON device_lists_stream (user_id, stream_id);
