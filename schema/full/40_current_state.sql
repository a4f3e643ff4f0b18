-- The resolved state of each room now, maintained by applying deltas as
-- events are persisted. `membership` repeats the member event's membership
-- so joined-member queries need no join.
CREATE TABLE current_state_events (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT,
    UNIQUE (room_id, type, state_key)
);
-- the rooms of a user
CREATE INDEX current_state_events_member ON current_state_events (state_key, membership)
    WHERE type = 'm.room.member';

-- Every change to current_state_events, numbered by the events stream
-- position of the batch that made it: readers (workers, sync) catch up on
-- state changes that no single new event shows (e.g. after state resolution).
CREATE TABLE current_state_delta_stream (
    stream_id BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,                           -- NULL: removed from the state
    prev_event_id TEXT
);
CREATE INDEX current_state_delta_stream_id ON current_state_delta_stream (stream_id);

-- Every membership event with the fields member lists show.
CREATE TABLE room_memberships (
    event_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    displayname TEXT,
    avatar_url TEXT,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX room_memberships_room_user ON room_memberships (room_id, user_id);
CREATE INDEX room_memberships_user ON room_memberships (user_id);

-- The current membership of this server's users, including memberships of
-- rooms the server is not in (invites and knocks over federation), which
-- current_state_events cannot show.
CREATE TABLE local_current_membership (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    UNIQUE (user_id, room_id)
);
CREATE INDEX local_current_membership_room ON local_current_membership (room_id);
