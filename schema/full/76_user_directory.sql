-- The user directory: one row per user seen joined to a room (remote users
-- with the profile of their member event) or registered here (local users,
-- with their global profile). search_text is the lowercased localpart and
-- display name the search matches against.
CREATE TABLE user_directory (
    user_id TEXT NOT NULL PRIMARY KEY,
    display_name TEXT,
    avatar_url TEXT,
    search_text TEXT NOT NULL,
    is_local BOOLEAN NOT NULL
);

-- Rooms whose members anyone may find: join rule public or history world_readable.
CREATE TABLE user_directory_public_rooms (
    room_id TEXT NOT NULL PRIMARY KEY
);

-- How far the directory has consumed current_state_delta_stream (one row).
CREATE TABLE user_directory_stream_pos (
    lock TEXT NOT NULL DEFAULT 'X' UNIQUE,
    stream_id BIGINT NOT NULL
);
INSERT INTO user_directory_stream_pos (lock, stream_id) VALUES ('X', 0);
