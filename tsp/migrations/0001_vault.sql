-- The token vault. A PAN is only ever stored sealed by the HSM (pan_sealed)
-- and looked up by its keyed hash (pan_hmac); no column holds a plaintext PAN
-- or any CVN2.
CREATE TABLE tokens (
    ref              TEXT PRIMARY KEY,   -- token unique reference
    pan_ref          TEXT NOT NULL,      -- PAN unique reference (per PAN)
    dpan             TEXT NOT NULL UNIQUE,
    dpan_hmac        BYTEA NOT NULL,
    par              TEXT NOT NULL,
    pan_sealed       BYTEA NOT NULL,
    pan_hmac         BYTEA NOT NULL,
    pan_last4        TEXT NOT NULL,
    pan_expiry       TEXT NOT NULL,      -- YYMM of the card
    expiry           TEXT NOT NULL,      -- YYMM of the token
    psn              INTEGER NOT NULL,
    issuer_id        TEXT NOT NULL,
    card_type        TEXT NOT NULL,
    product          TEXT NOT NULL,
    state            TEXT NOT NULL,
    suspended_by     TEXT NOT NULL DEFAULT '',
    device_id        TEXT NOT NULL,
    se_id            TEXT NOT NULL,
    se_public_key    BYTEA NOT NULL,
    device_model     TEXT NOT NULL,
    requestor_id     TEXT NOT NULL,
    entry_modes      TEXT NOT NULL,      -- domain restriction: allowed DE22 PAN entry modes
    key_index        INTEGER NOT NULL,
    assurance        TEXT NOT NULL,
    decision_id      TEXT NOT NULL,      -- the issuer's decision (OTP flow, notices)
    provisioned_at   BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX tokens_pan_hmac ON tokens (pan_hmac);
CREATE INDEX tokens_dpan_hmac ON tokens (dpan_hmac);
CREATE INDEX tokens_device ON tokens (device_id);

-- The highest ATC accepted per token (-1 before the first payment), apart
-- from the wide token row: every authorization updates it.
CREATE TABLE token_atc (
    ref       TEXT PRIMARY KEY,
    last_atc  INTEGER NOT NULL
);

-- Every state change of a token, with who caused it and why.
CREATE TABLE token_state_history (
    token_ref   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    caused_by   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (token_ref, seq)
);

-- Every de-tokenization: who asked, when, for which token. No PAN. An
-- append-only audit log written on the authorization hot path, so it has no
-- index at all (each would cost a B-tree insert per authorization): id is
-- unique and time-ordered by construction (ms << 22 | node << 12 |
-- sequence, node unique among running Authorizers, see authorizer_starts);
-- audits scan it.
CREATE TABLE detokenization_log (
    id          BIGINT NOT NULL,
    token_ref   TEXT NOT NULL,
    requester   TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    atc         INTEGER NOT NULL,
    at          BIGINT NOT NULL
);

-- One row per Authorizer start: its number mod 1024 is the node field of the
-- de-tokenization log ids that Authorizer makes, so no two running nodes
-- make the same id.
CREATE TABLE authorizer_starts (
    n           BIGINT PRIMARY KEY,
    node_name   TEXT NOT NULL,
    started_at  BIGINT NOT NULL
);
