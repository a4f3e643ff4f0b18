-- Verify keys of other servers, each checked when fetched (self-signed by the
-- server and, when it came through a notary, signed by the notary). One row per
-- key: a later fetch replaces the row only if it extends the key's validity.
CREATE TABLE server_signature_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    -- where the key came from: the server itself or a notary
    from_server TEXT NOT NULL,
    ts_added_ms BIGINT NOT NULL,
    -- the key may verify signatures made before this time (for a current key
    -- the response's valid_until_ts capped at 7 days after the fetch; for an
    -- old key its expired_ts)
    ts_valid_until_ms BIGINT NOT NULL,
    verify_key TEXT NOT NULL,               -- unpadded base64
    PRIMARY KEY (server_name, key_id)
);

-- Key responses exactly as their servers signed them, kept so that this server
-- can act as a notary (and keep answering for a server that has gone offline).
CREATE TABLE server_keys_json (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    from_server TEXT NOT NULL,
    ts_added_ms BIGINT NOT NULL,
    ts_valid_until_ms BIGINT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (server_name, key_id, from_server)
);
