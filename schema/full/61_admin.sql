-- Server administration (the /_synapse/admin API).

-- Per-user overrides of the message rate limit (0/0 means "not limited").
CREATE TABLE ratelimit_override (
    user_id TEXT NOT NULL PRIMARY KEY,
    messages_per_second BIGINT,
    burst_count BIGINT
);

-- Rooms an admin blocked: local users may not join them (deletion blocks first).
CREATE TABLE blocked_rooms (
    room_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL                    -- the admin who blocked it
);

-- Long admin operations (room deletion, history purges) run as resumable jobs:
-- a job's progress is committed after each batch, so a restart resumes it.
CREATE TABLE admin_jobs (
    job_id TEXT NOT NULL PRIMARY KEY,
    kind TEXT NOT NULL,                      -- 'delete_room', 'purge_history', 'delete_media'
    room_id TEXT,
    params TEXT NOT NULL,                    -- JSON given at creation
    status TEXT NOT NULL,                    -- kind-specific; 'complete' / 'failed' at the end
    progress TEXT NOT NULL,                  -- JSON the job updates batch by batch
    error TEXT,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX admin_jobs_room ON admin_jobs (room_id);

-- Quarantined media (local: server_name is ours) and media protected from quarantine.
CREATE TABLE media_quarantine (
    server_name TEXT NOT NULL,
    media_id TEXT NOT NULL,
    quarantined_by TEXT NOT NULL,
    PRIMARY KEY (server_name, media_id)
);

CREATE TABLE media_protected (
    server_name TEXT NOT NULL,
    media_id TEXT NOT NULL,
    PRIMARY KEY (server_name, media_id)
);

-- The server-notices room of each user (one per user; replaced if the user leaves it).
CREATE TABLE server_notice_rooms (
    user_id TEXT NOT NULL PRIMARY KEY,
    room_id TEXT NOT NULL
);
