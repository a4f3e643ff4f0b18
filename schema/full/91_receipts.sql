-- The latest receipt of each (room, receipt type, user, thread): the receipts
-- stream. A newer receipt replaces the row and takes a new stream id, so the
-- rows after a position are exactly the receipts that changed since it.
CREATE TABLE receipts (
    stream_id BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,              -- m.read, m.read.private
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,                 -- '' for an unthreaded receipt, 'main' or a thread root id
    event_id TEXT NOT NULL,
    -- the receipt's event's stream ordering: a receipt only ever moves forward
    event_stream_ordering BIGINT NOT NULL,
    data TEXT NOT NULL,                      -- JSON shown to clients: ts, thread_id
    UNIQUE (room_id, receipt_type, user_id, thread_id)
);
CREATE UNIQUE INDEX receipts_stream ON receipts (stream_id);
