-- Reports of events, rooms and users to the server's administrators
-- (POST /rooms/{roomId}/report/{eventId}, /rooms/{roomId}/report, /users/{userId}/report).
-- event_id NULL: a report of the whole room; room_id NULL: a report of a user.
CREATE TABLE content_reports (
    id BIGINT NOT NULL PRIMARY KEY,
    received_ts BIGINT NOT NULL,
    reporter TEXT NOT NULL,                  -- the reporting user
    room_id TEXT,
    event_id TEXT,
    target_user_id TEXT,                     -- the reported user (user reports), or the event's sender
    reason TEXT,
    score INTEGER,                           -- the deprecated -100..0 score of older clients
    resolved BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX content_reports_room ON content_reports (room_id);
CREATE INDEX content_reports_ts ON content_reports (received_ts);

-- unsigned.transaction_id of a client's own events: find the txn id from the event
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);
