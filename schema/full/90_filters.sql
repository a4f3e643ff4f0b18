-- Filters clients upload (POST /user/{userId}/filter), numbered per user from 0.
-- A filter is immutable once stored; an identical upload returns the existing id.
CREATE TABLE user_filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter_json TEXT NOT NULL,               -- canonical JSON of the definition
    PRIMARY KEY (user_id, filter_id)
);

-- /sync looks up which state event an event replaced (unsigned.prev_content)
-- by the event's id in the delta stream written with current state.
CREATE INDEX current_state_delta_stream_event ON current_state_delta_stream (event_id);
