-- Indexes the accounts handlers need on the tables of 70_accounts.sql.

-- Case-insensitive user lookups (login with "Alice", registration's "is the name taken").
CREATE INDEX users_lower_name ON users (lower(name));

-- Refresh token rotation: finding the predecessor of a refresh token, and the
-- access tokens bound to a refresh token.
CREATE INDEX refresh_tokens_next_token ON refresh_tokens (next_token_id);
CREATE INDEX access_tokens_refresh_token ON access_tokens (refresh_token_id);
