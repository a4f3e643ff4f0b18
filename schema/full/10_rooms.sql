-- Rooms this server knows about (created here or joined over federation).
CREATE TABLE rooms (
    room_id TEXT NOT NULL PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT,
    -- published in the server's public room directory
    is_public BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE INDEX rooms_public ON rooms (room_id) WHERE is_public;
