-- Inbound federation transactions already processed: a retried PUT /send/{txnId}
-- from the same origin gets the first answer again instead of being reprocessed.
CREATE TABLE received_transactions (
    origin TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    response_json TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, transaction_id)
);
CREATE INDEX received_transactions_ts ON received_transactions (received_ts);
