-- Tokens for m.login.registration_token. A use is "pending" from the moment a
-- registration session completes the stage until the account exists (or the
-- session expires); pending + completed may not exceed uses_allowed.
CREATE TABLE registration_tokens (
    token TEXT NOT NULL PRIMARY KEY,
    uses_allowed INTEGER,                     -- NULL: unlimited
    pending INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    expiry_time BIGINT                        -- ms since the epoch; NULL: never expires
);
