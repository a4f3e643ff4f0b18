-- What each local user's push rules said about an event they received: one
-- row per (user, event) whose actions notify or highlight. Unread counts are
-- the rows after the user's read receipt (per thread); /notifications pages
-- them newest first.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
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
