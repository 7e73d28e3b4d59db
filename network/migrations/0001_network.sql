-- One row per authorization request the switch answered (0100/0200), and per
-- reversal (0400/0420). The key is the duplicate-detection identity:
-- acquirer | terminal | STAN | RRN | DE7. The stored answer is the packed
-- response the acquirer got; a duplicate gets it again.
CREATE TABLE auths (
    dup_key       TEXT PRIMARY KEY,
    mti           TEXT NOT NULL,
    token_ref     TEXT NOT NULL,
    token_last4   TEXT NOT NULL,
    issuer_id     TEXT NOT NULL,
    processing    TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    stan          TEXT NOT NULL,
    rrn           TEXT NOT NULL,
    tx_time       TEXT NOT NULL,
    acquirer      TEXT NOT NULL,
    terminal      TEXT NOT NULL,
    merchant      TEXT NOT NULL,
    rc            TEXT NOT NULL,
    auth_code     TEXT NOT NULL,
    stand_in      INTEGER NOT NULL,
    reversed      INTEGER NOT NULL,
    answer        BYTEA NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX auths_created ON auths (created_at);

-- Reversals the switch owes an issuer (store and forward): a POS reversal of
-- an approval, or the reversal of an issuer answer that came too late. A row
-- is done once the issuer acknowledged it.
CREATE TABLE issuer_reversals (
    id            TEXT PRIMARY KEY,
    orig_key      TEXT NOT NULL UNIQUE,
    mti           TEXT NOT NULL,
    reason        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    done          INTEGER NOT NULL,
    last_error    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX issuer_reversals_pending ON issuer_reversals (done, created_at);

-- Events written in the same transaction as the authorization they tell of,
-- published by a loop and then deleted: an authorization is never recorded
-- without its event, nor an event published for one not recorded.
CREATE TABLE outbox (
    id         TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    payload    BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
