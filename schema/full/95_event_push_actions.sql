-- What local users' push rules said about the events they received.
-- A row with user_id '' is the event's broadcast row: its actions hold for
-- every local member joined to the room when it arrived (see push_room_joins)
-- except those with a row of their own for the event (the sender, mentioned
-- users, users with their own rules...; a row with notif = highlight = 0 is
-- such an exception). Without a broadcast row only the users' own rows count.
-- Unread counts are the rows after the user's read receipt (per thread);
-- /notifications pages them newest first.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,                   -- '' for the broadcast row
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,                 -- 'main' or the thread root's event id
    stream_ordering BIGINT NOT NULL,         -- the event's
    event_id TEXT NOT NULL,
    actions TEXT NOT NULL,                   -- JSON list
    notif SMALLINT NOT NULL,                 -- 1 if the actions notify
    highlight SMALLINT NOT NULL,             -- 1 if they set the highlight tweak
    ts BIGINT NOT NULL,                      -- the event's origin_server_ts
    PRIMARY KEY (user_id, stream_ordering)
);
CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_id, thread_id, stream_ordering);

-- Since when each local user has been joined to each room (the first join of
-- the current stretch; profile changes keep it): the broadcast rows before it
-- are not theirs.
CREATE TABLE push_room_joins (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    joined_at BIGINT NOT NULL,               -- the join event's stream ordering
    PRIMARY KEY (user_id, room_id)
);

-- Pushers: where to deliver a user's notifications (one per app id and pushkey).
CREATE TABLE pushers (
    id BIGINT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    access_token_device TEXT,                -- the device that set it: deleted with it
    kind TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,                      -- JSON
    created_ts BIGINT NOT NULL,
    last_stream_ordering BIGINT NOT NULL,    -- the last event sent (or skipped)
    failing_since BIGINT,
    UNIQUE (app_id, pushkey, user_id)
);
CREATE INDEX pushers_user ON pushers (user_id);
