-- Every event (PDU) the server has stored, one row each. Outliers (events known
-- without their state, e.g. auth events or remote invites), rejected and
-- soft-failed events are stored too, flagged, so they are never fetched twice;
-- timeline queries skip them.
CREATE TABLE events (
    event_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,                          -- NULL for non-state events
    sender TEXT NOT NULL,
    -- arrival order on this server: positive for live events (the events
    -- stream), negative for backfilled history (the backfill stream)
    stream_ordering BIGINT NOT NULL UNIQUE,
    topological_ordering BIGINT NOT NULL,    -- the event's depth
    origin_server_ts BIGINT NOT NULL,
    received_ts BIGINT NOT NULL,
    outlier BOOLEAN NOT NULL,
    rejected_reason TEXT,
    -- passed auth against its own auth events but not against the room's
    -- current state: kept for the DAG, never shown to clients
    soft_failed BOOLEAN NOT NULL DEFAULT FALSE
);

-- /messages pagination in (depth, stream) order
CREATE INDEX events_room_topological ON events (room_id, topological_ordering, stream_ordering);
-- /sync: a room's events after a stream position
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);

-- The PDU JSON exactly as received or built, kept apart from `events` so the
-- rows scanned by timeline queries stay narrow.
CREATE TABLE event_json (
    event_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    room_version TEXT NOT NULL,              -- needed to parse outliers of unknown rooms
    internal_metadata TEXT NOT NULL,         -- JSON of InternalMetadata (server-local)
    json TEXT NOT NULL
);

-- prev_events: the room DAG
CREATE TABLE event_edges (
    event_id TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    UNIQUE (event_id, prev_event_id)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

-- auth_events: walked (recursively) for auth chains
CREATE TABLE event_auth (
    event_id TEXT NOT NULL,
    auth_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    UNIQUE (event_id, auth_id)
);

-- m.room.redaction events and their targets (the target may arrive later).
CREATE TABLE redactions (
    event_id TEXT NOT NULL PRIMARY KEY,      -- the redaction event
    redacts TEXT NOT NULL,
    -- the redaction's sender had the power to redact at the redaction's auth
    -- state: from room v3 on, that is what lets it apply to another server's event
    authorised BOOLEAN NOT NULL,
    received_ts BIGINT NOT NULL
);
CREATE INDEX redactions_redacts ON redactions (redacts);

-- The DAG's current leaves per room: the prev_events of the next event we send.
CREATE TABLE event_forward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    UNIQUE (room_id, event_id)
);

-- Events referenced as prev_events that we do not have: where backfill starts.
CREATE TABLE event_backward_extremities (
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    UNIQUE (room_id, event_id)
);
CREATE INDEX event_backward_extremities_event ON event_backward_extremities (event_id);
