-- The issuer host's store: every bank programme hosted by this process keeps
-- its rows here, keyed by issuer_id (see issuer.go for why one store).
-- Money is BIGINT minor units (CNY fen); times BIGINT Unix milliseconds;
-- "day" is the number of days since 1970-01-01 in China Standard Time.

-- Cards. The PAN itself is not stored: cards are found by a keyed hash
-- (HMAC in the HSM), and first6/last4 are kept for display. CVN2 only as a
-- keyed hash.
CREATE TABLE cards (
    id                 TEXT PRIMARY KEY,
    issuer_id          TEXT NOT NULL,
    pan_hash           BYTEA NOT NULL UNIQUE,
    pan_first6         TEXT NOT NULL,
    pan_last4          TEXT NOT NULL,
    pan_length         INTEGER NOT NULL,
    expiry             TEXT NOT NULL,
    cvn2_hash          BYTEA,
    name               TEXT NOT NULL,
    phone              TEXT NOT NULL,
    card_type          TEXT NOT NULL,
    product            TEXT NOT NULL,
    status             TEXT NOT NULL,
    psn                INTEGER NOT NULL,
    credit_limit_minor BIGINT NOT NULL,
    created_ms         BIGINT NOT NULL
);
CREATE INDEX cards_issuer_last4 ON cards (issuer_id, pan_last4);

-- The double-entry ledger: every journal entry is two or more postings that
-- sum to zero. Accounts are named: card/<cardId>/available,
-- card/<cardId>/held, bank/<issuerId>/deposits, bank/<issuerId>/credit-lines.
CREATE TABLE postings (
    entry_id     TEXT NOT NULL,
    leg          INTEGER NOT NULL,
    issuer_id    TEXT NOT NULL,
    account      TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    kind         TEXT NOT NULL, -- OPEN, HOLD, RELEASE
    auth_id      TEXT,
    created_ms   BIGINT NOT NULL,
    PRIMARY KEY (entry_id, leg)
);
-- No index on account: balances are summed by scans at start and in the
-- ledger check, and one index less is one b-tree write less per posting on
-- the authorization path.

-- Authorizations (0100/0200), approved or declined. Ids are time-ordered
-- (see idgen.go), so the primary key grows at its end and "the recent ones"
-- are a range of it. ident is the message's
-- identity (acquirer|terminal|STAN|DE7): a second message with it is a
-- duplicate. alt_ident (terminal|STAN|RRN|DE7) is checked when a reversal
-- without DE90 finds its original by its own identity (no index: one b-tree
-- write less per authorization).
CREATE TABLE authorizations (
    id            TEXT PRIMARY KEY,
    issuer_id     TEXT NOT NULL,
    card_id       TEXT,
    pan_first6    TEXT NOT NULL,
    pan_last4     TEXT NOT NULL,
    mti           TEXT NOT NULL,
    proc_code     TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    ident         TEXT NOT NULL UNIQUE,
    alt_ident     TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    response_code TEXT NOT NULL,
    auth_code     TEXT NOT NULL,
    approved      INTEGER NOT NULL,
    reversed      INTEGER NOT NULL,
    reversed_ms   BIGINT NOT NULL,
    token_ref     TEXT NOT NULL,
    token_last4   TEXT NOT NULL,
    token_requestor   TEXT NOT NULL,
    cryptogram_result TEXT NOT NULL,
    day           BIGINT NOT NULL,
    created_ms    BIGINT NOT NULL
);

-- Reversals (0400/0420) as received. auth_id is NULL while the original is
-- unknown (a reversal that overtook its original): the original, when it
-- comes, is then declined so no hold is left behind.
CREATE TABLE reversals (
    id            TEXT PRIMARY KEY,
    issuer_id     TEXT NOT NULL,
    mti           TEXT NOT NULL,
    orig_ident    TEXT NOT NULL,
    orig_alt      TEXT NOT NULL,
    auth_id       TEXT,
    released      INTEGER NOT NULL,
    created_ms    BIGINT NOT NULL
);
CREATE INDEX reversals_auth ON reversals (auth_id);

-- Tokenization decisions and their OTP state.
CREATE TABLE decisions (
    id              TEXT PRIMARY KEY,
    issuer_id       TEXT NOT NULL,
    card_id         TEXT,
    device_id       TEXT NOT NULL,
    se_id           TEXT NOT NULL,
    token_requestor TEXT NOT NULL,
    day             BIGINT NOT NULL,
    decision        TEXT NOT NULL,
    reason          TEXT NOT NULL,
    detail_failure  INTEGER NOT NULL,
    created_ms      BIGINT NOT NULL,
    expires_ms      BIGINT NOT NULL,
    otp_state       TEXT NOT NULL, -- NONE, SENT, VERIFIED, LOCKED
    otp_hash        BYTEA,
    otp_expires_ms  BIGINT NOT NULL,
    otp_sends       INTEGER NOT NULL,
    otp_attempts    INTEGER NOT NULL
);
CREATE INDEX decisions_card_day ON decisions (issuer_id, card_id, day);
CREATE INDEX decisions_device_day ON decisions (issuer_id, device_id, day);

-- Token notices from the TSP.
CREATE TABLE token_notices (
    token_ref   TEXT NOT NULL,
    event       TEXT NOT NULL,
    state       TEXT NOT NULL,
    issuer_id   TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    pan_last4   TEXT NOT NULL,
    caused_by   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (token_ref, event, state)
);
