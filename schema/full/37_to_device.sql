-- The to_device stream: messages waiting for local devices (deleted once the
-- device acknowledges them with a later sync token) and messages for remote
-- users queued for the federation sender, both numbered by one stream.
CREATE TABLE device_inbox (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    message_json TEXT NOT NULL
);
CREATE INDEX device_inbox_device ON device_inbox (user_id, device_id, stream_id);
CREATE INDEX device_inbox_stream ON device_inbox (stream_id);

-- One m.direct_to_device EDU per destination and request, in stream order.
CREATE TABLE device_federation_outbox (
    stream_id BIGINT NOT NULL,
    destination TEXT NOT NULL,
    edu_json TEXT NOT NULL,
    queued_ts BIGINT NOT NULL
);
CREATE INDEX device_federation_outbox_dest ON device_federation_outbox (destination, stream_id);

-- The highest to_device stream id ever written (one row).  Inbox rows are
-- deleted, so without it a restart could hand out ids clients already hold.
CREATE TABLE to_device_stream_max (
    stream_id BIGINT NOT NULL
);
INSERT INTO to_device_stream_max (stream_id) VALUES (0);

-- PUT /sendToDevice transaction ids: a repeat from the same device sends nothing.
CREATE TABLE to_device_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX to_device_txn_ids_ts ON to_device_txn_ids (inserted_ts);
