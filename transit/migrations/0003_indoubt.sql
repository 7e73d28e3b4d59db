-- Taps a gate reported in doubt: its intent was durable (card, offline
-- serial, terminal serial, amount, date, time) but the card's answer never
-- came and the card did not come back to that gate. The card's own proof
-- (its TAC, reported by the phone) clears them.
CREATE TABLE transit_indoubt (
    card_number    TEXT NOT NULL,
    offline_serial BIGINT NOT NULL,
    terminal       TEXT NOT NULL,
    city           TEXT NOT NULL,
    tsn            BIGINT NOT NULL,
    amount_minor   BIGINT NOT NULL,
    tx_type        INTEGER NOT NULL,
    tx_date        TEXT NOT NULL,
    tx_time        TEXT NOT NULL,
    station        TEXT NOT NULL,
    batch_id       TEXT NOT NULL,
    created        BIGINT NOT NULL,
    PRIMARY KEY (card_number, offline_serial, terminal)
);
