-- Rewards points (issue 8). The points ledger is the issuer's, under its own
-- card id, which the wallet never sees: the issuer answers each approval with
-- the points it earned and the card's new balance, and the switch carries
-- them in transaction.authorized. The wallet keeps both: per transaction, and
-- the card's latest balance (the one of its newest approval).
CREATE TABLE transaction_points (
    transaction_id TEXT PRIMARY KEY,
    card_id        TEXT NOT NULL,
    earned         BIGINT NOT NULL,
    balance        BIGINT NOT NULL,
    time_ms        BIGINT NOT NULL
);

CREATE TABLE card_points (
    card_id        TEXT PRIMARY KEY,
    balance        BIGINT NOT NULL,
    as_of_ms       BIGINT NOT NULL,
    transaction_id TEXT NOT NULL
);
