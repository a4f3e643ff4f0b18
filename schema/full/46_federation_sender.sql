-- The outbound federation sender: per-destination retry state and catch-up
-- positions, the sender's own positions in the streams it reads, and the
-- durable per-destination queue of device list changes.

-- One row per destination we have tried to send to.  retry_last_ts and
-- retry_interval (ms) hold the backoff: no transaction is attempted before
-- retry_last_ts + retry_interval.  failure_ts is when the current run of
-- failures began (NULL: the destination is up).
-- last_successful_stream_ordering is the stream ordering of the newest event
-- the destination has accepted: catch-up resumes from there.
CREATE TABLE federation_destinations (
    destination TEXT PRIMARY KEY,
    retry_last_ts BIGINT NOT NULL DEFAULT 0,
    retry_interval BIGINT NOT NULL DEFAULT 0,
    failure_ts BIGINT,
    last_successful_stream_ordering BIGINT
);

-- The newest local event of each room that each destination should have.
-- Catch-up sends, for every room with stream_ordering above the destination's
-- last_successful_stream_ordering, this event (the latest), not the history.
CREATE TABLE federation_destination_rooms (
    destination TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (destination, room_id)
);
CREATE INDEX federation_destination_rooms_order ON federation_destination_rooms (destination, stream_ordering);

-- How far the sender has read each input stream ('events', 'device_lists').
CREATE TABLE federation_stream_positions (
    stream_name TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);

-- Device list changes of local users still to be sent to a destination
-- (device_id NULL: the user's cross-signing keys changed).
CREATE TABLE federation_device_list_outbox (
    destination TEXT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT,
    stream_id BIGINT NOT NULL
);
CREATE INDEX federation_device_list_outbox_dest ON federation_device_list_outbox (destination, stream_id);

-- The last device list stream id each destination accepted for each local
-- user: the prev_id of the next m.device_list_update.
CREATE TABLE federation_device_list_sent (
    destination TEXT NOT NULL,
    user_id TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (destination, user_id)
);
