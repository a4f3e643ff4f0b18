-- Rooms joined with partial state (send_join with omit_members): the room's state
-- lacks most m.room.member events until the background resync has fetched the
-- full state at the join event; the row is deleted once it has.
CREATE TABLE partial_state_rooms (
    room_id TEXT NOT NULL PRIMARY KEY,
    join_event_id TEXT NOT NULL,
    -- the resident server that answered send_join (asked first by the resync)
    joined_via TEXT NOT NULL,
    added_ts BIGINT NOT NULL
);
-- servers_in_room from the send_join answer, plus servers learnt since: where
-- our events go while the member list is unknown.
CREATE TABLE partial_state_room_servers (
    room_id TEXT NOT NULL,
    server_name TEXT NOT NULL,
    UNIQUE (room_id, server_name)
);
-- When each room's resync finished: the events-stream position of its new current
-- state.  /sync leaves partial-state rooms out (unless members are lazy-loaded) and
-- shows a room resynced after the client's position as newly joined (full state).
CREATE TABLE partial_state_resynced (
    room_id TEXT NOT NULL PRIMARY KEY,
    stream_id BIGINT NOT NULL
);
