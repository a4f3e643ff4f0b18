-- Application services: how far each service's transactions have got through the
-- events stream, and the one transaction in flight per service.  The pending row
-- is written before the first attempt, so a restart resends the same txn id with
-- the same events (services de-duplicate by txn id).
CREATE TABLE appservice_stream_positions (
    as_id TEXT NOT NULL PRIMARY KEY,
    stream_position BIGINT NOT NULL,
    last_txn_id BIGINT NOT NULL
);

CREATE TABLE appservice_pending_txns (
    as_id TEXT NOT NULL PRIMARY KEY,
    txn_id BIGINT NOT NULL,
    to_position BIGINT NOT NULL,
    event_ids TEXT NOT NULL,
    ephemeral TEXT NOT NULL
);
