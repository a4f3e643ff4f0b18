-- User-interactive authentication sessions. A session is bound to the endpoint
-- (method + path) and the parameters of the request that opened it, so a
-- completed authentication cannot be replayed for another operation.
CREATE TABLE ui_auth_sessions (
    session_id TEXT NOT NULL PRIMARY KEY,
    creation_ts BIGINT NOT NULL,
    method TEXT NOT NULL,
    uri TEXT NOT NULL,
    user_id TEXT,                             -- the authenticated requester; NULL for /register
    params TEXT NOT NULL,                     -- JSON: the first request's body without "auth" and secrets
    hashed_params TEXT NOT NULL               -- JSON: bcrypt hashes of its secrets (passwords), never plaintext
);
CREATE INDEX ui_auth_sessions_creation ON ui_auth_sessions (creation_ts);

-- Stages a session has completed, in completion order.
CREATE TABLE ui_auth_sessions_stages (
    session_id TEXT NOT NULL,
    stage_type TEXT NOT NULL,
    stage_order INTEGER NOT NULL,
    result TEXT NOT NULL,                     -- JSON: what the stage established (user id, token)
    PRIMARY KEY (session_id, stage_type)
);
