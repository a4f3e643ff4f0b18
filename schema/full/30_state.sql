-- Room state at events, stored as state groups. A group is either a snapshot
-- (every state entry, chain_length 0) or a delta against a previous group
-- (state_group_edges), holding only the entries that changed. Chains are cut
-- with a fresh snapshot every N hops so reading a group touches a bounded
-- number of rows.
CREATE TABLE state_groups (
    id BIGINT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,                  -- the event the group was made for (diagnostics)
    chain_length INTEGER NOT NULL            -- hops to the snapshot this group builds on
);
CREATE INDEX state_groups_room ON state_groups (room_id);

CREATE TABLE state_group_edges (
    state_group BIGINT NOT NULL PRIMARY KEY REFERENCES state_groups (id),
    prev_state_group BIGINT NOT NULL REFERENCES state_groups (id)
);
CREATE INDEX state_group_edges_prev ON state_group_edges (prev_state_group);

CREATE TABLE state_groups_state (
    state_group BIGINT NOT NULL REFERENCES state_groups (id),
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT                            -- NULL: removed relative to the previous group
);
CREATE UNIQUE INDEX state_groups_state_key ON state_groups_state (state_group, type, state_key);

-- The state after (state_group) and before (state_group_before) each
-- non-outlier event.
CREATE TABLE event_to_state_groups (
    event_id TEXT NOT NULL PRIMARY KEY,
    state_group BIGINT NOT NULL REFERENCES state_groups (id),
    state_group_before BIGINT REFERENCES state_groups (id)
);
CREATE INDEX event_to_state_groups_group ON event_to_state_groups (state_group);
