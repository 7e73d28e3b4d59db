-- Advices the switch owes an issuer (store and forward): an approval the
-- switch gave in the issuer's stead (stand-in) is queued in the write that
-- records it and sent as 0120/0220 (repeats 0121/0221) until the issuer
-- acknowledges it. done: 0 pending, 1 acknowledged (0130/0230 with DE39 00),
-- 2 refused by the issuer (another DE39; not retried, last_error says which).
-- pan is set only for a plain card (a token's PAN is asked of the TSP when
-- sending) and emptied once the row is no longer pending.
CREATE TABLE issuer_advices (
    id            TEXT PRIMARY KEY,
    orig_key      TEXT NOT NULL UNIQUE,
    mti           TEXT NOT NULL,
    pan           TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    done          INTEGER NOT NULL,
    last_error    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX issuer_advices_pending ON issuer_advices (done, created_at);
