-- Client transaction ids (PUT /send/{type}/{txnId} and friends): a repeated
-- request with the same txn id from the same device returns the first event.
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX event_txn_ids_ts ON event_txn_ids (inserted_ts);
