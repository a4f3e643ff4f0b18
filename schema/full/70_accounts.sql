-- Local user accounts.
CREATE TABLE users (
    name TEXT NOT NULL PRIMARY KEY,           -- full user id
    password_hash TEXT,                       -- bcrypt; NULL: cannot log in with a password
    creation_ts BIGINT NOT NULL,
    admin BOOLEAN NOT NULL DEFAULT FALSE,
    is_guest BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated BOOLEAN NOT NULL DEFAULT FALSE,
    user_type TEXT,                           -- NULL, 'bot', 'support'
    appservice_id TEXT,
    shadow_banned BOOLEAN NOT NULL DEFAULT FALSE,
    locked BOOLEAN NOT NULL DEFAULT FALSE,
    suspended BOOLEAN NOT NULL DEFAULT FALSE
);

-- Devices of local users.
CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    hidden BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id)
);

-- Access tokens, stored as sha256 digests (never the token itself).
CREATE TABLE access_tokens (
    id BIGINT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    valid_until_ms BIGINT,                    -- NULL: does not expire
    refresh_token_id BIGINT,
    used BOOLEAN NOT NULL DEFAULT FALSE,      -- a refreshable token that a client has used
    puppets_user_id TEXT                      -- admin "login as user" tokens
);
CREATE INDEX access_tokens_user_device ON access_tokens (user_id, device_id);

-- Refresh tokens (MSC2918 / spec v1.3), stored as sha256 digests.
CREATE TABLE refresh_tokens (
    id BIGINT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    next_token_id BIGINT,                     -- set once used: the token that replaced it
    expiry_ts BIGINT,
    ultimate_session_expiry_ts BIGINT
);
CREATE INDEX refresh_tokens_user_device ON refresh_tokens (user_id, device_id);
