-- Transit agencies (all cities in one store; every row names its city).
CREATE TABLE transit_counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

-- Issued e-purse cards. The shadow balance is loaded_minor - cleared_minor:
-- confirmed loads minus cleared gate debits.
CREATE TABLE transit_cards (
    card_number        TEXT PRIMARY KEY,
    city               TEXT NOT NULL,
    device_id          TEXT NOT NULL,
    se_id              TEXT NOT NULL,
    status             TEXT NOT NULL,
    status_reason      TEXT NOT NULL DEFAULT '',
    loaded_minor       BIGINT NOT NULL DEFAULT 0,
    cleared_minor      BIGINT NOT NULL DEFAULT 0,
    cleared_count      BIGINT NOT NULL DEFAULT 0,
    max_offline_serial BIGINT NOT NULL DEFAULT -1,
    cleared_bits       BYTEA,
    moved_from         TEXT NOT NULL DEFAULT '',
    moved_to           TEXT NOT NULL DEFAULT '',
    lineage            TEXT NOT NULL,
    created            BIGINT NOT NULL,
    updated            BIGINT NOT NULL
);
CREATE INDEX transit_cards_device ON transit_cards (device_id);
CREATE INDEX transit_cards_status ON transit_cards (city, status);

-- Payments the agency made as an in-app merchant (issuance fees, top-ups).
CREATE TABLE transit_payments (
    id           TEXT PRIMARY KEY,
    city         TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    token        TEXT NOT NULL,
    stan         TEXT NOT NULL,
    rrn          TEXT NOT NULL,
    de7          TEXT NOT NULL,
    state        TEXT NOT NULL,
    response     TEXT NOT NULL DEFAULT '',
    auth_code    TEXT NOT NULL DEFAULT '',
    created      BIGINT NOT NULL,
    updated      BIGINT NOT NULL
);
CREATE INDEX transit_payments_state ON transit_payments (state);

-- Loads (top-ups and balance moves) with their exactly-once state machine.
CREATE TABLE transit_loads (
    id             TEXT PRIMARY KEY,
    request_id     TEXT NOT NULL,
    city           TEXT NOT NULL,
    card_number    TEXT NOT NULL,
    kind           TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL,
    state          TEXT NOT NULL,
    payment_id     TEXT NOT NULL DEFAULT '',
    online_serial  BIGINT NOT NULL DEFAULT -1,
    balance_before BIGINT NOT NULL DEFAULT -1,
    terminal       TEXT NOT NULL,
    tx_date        TEXT NOT NULL DEFAULT '',
    tx_time        TEXT NOT NULL DEFAULT '',
    card_random    TEXT NOT NULL DEFAULT '',
    tac            TEXT NOT NULL DEFAULT '',
    created        BIGINT NOT NULL,
    updated        BIGINT NOT NULL
);
CREATE UNIQUE INDEX transit_loads_request ON transit_loads (card_number, request_id);
-- At most one open load per card: a retry reuses it (same online serial).
CREATE UNIQUE INDEX transit_loads_open ON transit_loads (card_number) WHERE state IN ('PAYING', 'PAID', 'MAC2_SENT');
CREATE INDEX transit_loads_state ON transit_loads (state, updated);

-- Clearing. Which offline serials of a card cleared is a bitmap on the card
-- (cleared_bits: bit n = serial n, 8 KiB at most), so a batch costs a read
-- and a write per card, not per record; the cleared records themselves are
-- kept with their batch (records, JSON), and transit_batch_cards says which
-- batches hold a card's records (its history).
CREATE TABLE transit_batches (
    id         TEXT PRIMARY KEY,
    city       TEXT NOT NULL,
    terminal   TEXT NOT NULL,
    received   BIGINT NOT NULL,
    result     TEXT NOT NULL,
    records    TEXT NOT NULL
);

CREATE TABLE transit_batch_cards (
    card_number TEXT NOT NULL,
    batch_id    TEXT NOT NULL,
    received    BIGINT NOT NULL,
    PRIMARY KEY (card_number, batch_id)
);

-- Records a batch could not clear: bad TAC, replays, records of moved cards.
CREATE TABLE transit_exceptions (
    batch_id       TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    card_number    TEXT NOT NULL,
    offline_serial BIGINT NOT NULL,
    kind           TEXT NOT NULL,
    created        BIGINT NOT NULL,
    PRIMARY KEY (batch_id, seq)
);

CREATE TABLE transit_psams (
    id         TEXT PRIMARY KEY,
    city       TEXT NOT NULL,
    station    TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    created    BIGINT NOT NULL
);

CREATE TABLE transit_transfers (
    id           TEXT PRIMARY KEY,
    city         TEXT NOT NULL,
    lineage      TEXT NOT NULL,
    from_card    TEXT NOT NULL,
    to_card      TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    created      BIGINT NOT NULL
);
CREATE INDEX transit_transfers_lineage ON transit_transfers (lineage, created);
