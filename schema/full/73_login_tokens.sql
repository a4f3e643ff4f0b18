-- Short-lived single-use m.login.token tokens (POST /login/get_token), stored as sha256 digests.
CREATE TABLE login_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    expiry_ts BIGINT NOT NULL
);
CREATE INDEX login_tokens_expiry ON login_tokens (expiry_ts);
