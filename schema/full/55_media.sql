-- Media uploaded to this server (mxc://<our server name>/<media_id>).
-- A row made by POST /_matrix/media/v1/create has no content yet (media_length
-- IS NULL) until PUT /_matrix/media/v3/upload fills it in; the file itself lives
-- in the media store (local_content/<shard>/...), never in the database.
CREATE TABLE local_media (
    media_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,                    -- the uploader (or the creator of a pending id)
    created_ts BIGINT NOT NULL,
    unused_expires_at BIGINT,                 -- pending ids only: lapses if not uploaded by then
    media_type TEXT,                          -- Content-Type given at upload
    media_length BIGINT,                      -- NULL: created, not yet uploaded
    upload_name TEXT,                         -- the upload's ?filename=
    uploaded_ts BIGINT,
    sha256 TEXT,                              -- hex digest of the content
    authenticated BOOLEAN NOT NULL,           -- stored during the unauthenticated-media freeze
    image_state TEXT,                         -- 'image' / 'not_image' / 'too_large'; NULL: not looked at
    image_width INTEGER,
    image_height INTEGER,
    image_animated BOOLEAN
);
CREATE INDEX local_media_pending ON local_media (user_id, unused_expires_at) WHERE media_length IS NULL;

-- Media of other servers, fetched over federation and kept here.
CREATE TABLE remote_media_cache (
    server_name TEXT NOT NULL,
    media_id TEXT NOT NULL,
    media_type TEXT NOT NULL,
    media_length BIGINT NOT NULL,
    upload_name TEXT,
    created_ts BIGINT NOT NULL,               -- when this server fetched it
    sha256 TEXT NOT NULL,
    authenticated BOOLEAN NOT NULL,
    image_state TEXT,
    image_width INTEGER,
    image_height INTEGER,
    image_animated BOOLEAN,
    PRIMARY KEY (server_name, media_id)
);

-- Thumbnails generated from local (server_name = our name) or cached remote media.
-- (box_width, box_height, method) is the size that was asked for (a configured
-- thumbnail size, or the request itself with dynamic_thumbnails); width/height
-- are what came out (never upscaled).
CREATE TABLE media_thumbnails (
    server_name TEXT NOT NULL,
    media_id TEXT NOT NULL,
    box_width INTEGER NOT NULL,
    box_height INTEGER NOT NULL,
    method TEXT NOT NULL,                     -- 'crop' / 'scale'
    animated BOOLEAN NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    media_length BIGINT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, media_id, box_width, box_height, method, animated)
);
