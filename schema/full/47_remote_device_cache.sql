-- What we know of remote users' devices and cross-signing keys, kept fresh by
-- m.device_list_update / m.signing_key_update EDUs and resyncs.

-- One row per remote user whose device list we cache.  stream_id is the last
-- m.device_list_update stream_id applied; stale means an update arrived that
-- the cache does not reflect (the next /keys/query asks the user's server).
CREATE TABLE remote_device_lists (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT,
    stale BOOLEAN NOT NULL,
    updated_ts BIGINT NOT NULL
);

CREATE TABLE remote_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    keys_json TEXT,
    display_name TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- key_type: master / self_signing.
CREATE TABLE remote_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- OpenID tokens handed to local users (POST /user/{userId}/openid/request_token),
-- checked by GET /_matrix/federation/v1/openid/userinfo.
CREATE TABLE openid_tokens (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    ts_valid_until_ms BIGINT NOT NULL
);
CREATE INDEX openid_tokens_until ON openid_tokens (ts_valid_until_ms);
