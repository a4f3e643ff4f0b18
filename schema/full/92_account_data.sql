-- Per-user account data, global and per room, sharing one stream: each write
-- replaces the row and takes a new stream id.
CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    account_data_type TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, account_data_type)
);
CREATE UNIQUE INDEX account_data_stream ON account_data (stream_id);
CREATE INDEX account_data_user_stream ON account_data (user_id, stream_id);

CREATE TABLE room_account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    account_data_type TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id, account_data_type)
);
CREATE UNIQUE INDEX room_account_data_stream ON room_account_data (stream_id);
CREATE INDEX room_account_data_user_stream ON room_account_data (user_id, stream_id);
