-- Room aliases this server is authoritative for (#local:this_server).
CREATE TABLE room_aliases (
    room_alias TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Global profiles of local users.
CREATE TABLE profiles (
    user_id TEXT NOT NULL PRIMARY KEY,
    displayname TEXT,
    avatar_url TEXT
);

-- Rooms a user has left and then forgotten (hidden from their sync and /joined_rooms history).
CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);
