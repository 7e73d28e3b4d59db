-- The terminal's counters: STAN (DE11), RRN sequence and the transaction
-- sequence counter (9F41) only ever move forward, durably, before a message
-- carrying them leaves.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

-- Every transaction the terminal started, with its outcome. token_last4 only:
-- the terminal never keeps the token.
CREATE TABLE transactions (
    stan         TEXT NOT NULL,
    rrn          TEXT PRIMARY KEY,
    tx_time      TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    token_last4  TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    rc           TEXT NOT NULL,
    auth_code    TEXT NOT NULL,
    reversal     TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE INDEX transactions_created ON transactions (created_at);
