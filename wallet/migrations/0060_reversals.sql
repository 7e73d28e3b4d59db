-- Reversals of approvals (issue 8): the switch publishes transaction.reversed
-- once the issuer acknowledged an acquirer's reversal, with the points it took
-- back and the card's balance after it. One row per reversed transaction
-- (the key makes a redelivery or a second reversal change nothing); kept
-- apart from transactions so a reversal that arrives before its approval's
-- event is not lost.
CREATE TABLE transaction_reversals (
    transaction_id  TEXT PRIMARY KEY,
    card_id         TEXT NOT NULL,
    points_reversed BIGINT,
    discount_minor  BIGINT NOT NULL,
    time_ms         BIGINT NOT NULL
);
