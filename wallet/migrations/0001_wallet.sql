-- Mi accounts. phone and email are stored normalized (digits with an optional
-- leading +; lower-case e-mail) so sign-in by either finds the account.
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    phone         TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_ms    BIGINT NOT NULL
);

-- One-time recovery codes (second factor of the portal), SHA-256 hex of the
-- normalized code; used_ms > 0 once spent.
CREATE TABLE recovery_codes (
    account_id TEXT NOT NULL,
    code_hash  TEXT NOT NULL,
    used_ms    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, code_hash)
);

-- Bearer sessions by SHA-256 hex of the token.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    revoked_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_account ON sessions (account_id);

-- Failed sign-ins per account, or per login without an account (SHA-256 of
-- "account:<id>" or "login:<normalized login>", so unknown logins lock the
-- same way and the table does not list who tried).
CREATE TABLE signin_failures (
    login_hash      TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    first_ms        BIGINT NOT NULL,
    locked_until_ms BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE devices (
    id                   TEXT PRIMARY KEY,
    account_id           TEXT NOT NULL,
    model                TEXT NOT NULL,
    se_id                TEXT NOT NULL UNIQUE,
    se_public_key        BYTEA NOT NULL,
    fingerprint_enrolled INTEGER NOT NULL,
    default_card_id      TEXT NOT NULL DEFAULT '',
    -- notify_seq numbers the device's notifications; bumping it also locks
    -- the row, which serializes card-slot reservations on PostgreSQL.
    notify_seq           BIGINT NOT NULL DEFAULT 0,
    created_ms           BIGINT NOT NULL,
    last_seen_ms         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX devices_account ON devices (account_id);

-- Cards bound to devices: references and display data only, never a PAN.
CREATE TABLE cards (
    id           TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    token_ref    TEXT NOT NULL DEFAULT '',
    par          TEXT NOT NULL DEFAULT '',
    pan_last4    TEXT NOT NULL DEFAULT '',
    token_last4  TEXT NOT NULL DEFAULT '',
    token_expiry TEXT NOT NULL DEFAULT '',
    issuer_id    TEXT NOT NULL DEFAULT '',
    bank         TEXT NOT NULL DEFAULT '',
    product      TEXT NOT NULL DEFAULT '',
    art          TEXT NOT NULL DEFAULT '',
    card_type    TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL,
    provisioned  INTEGER NOT NULL DEFAULT 0,
    -- state_ms is when the current state was decided (at the TSP), so a
    -- late event never puts an older state back.
    state_ms     BIGINT NOT NULL DEFAULT 0,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL
);
CREATE INDEX cards_device ON cards (device_id);
CREATE INDEX cards_token_ref ON cards (token_ref);

-- Transactions by the switch's transaction id (idempotent inserts).
CREATE TABLE transactions (
    id            TEXT PRIMARY KEY,
    card_id       TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    merchant_name TEXT NOT NULL,
    approved      INTEGER NOT NULL,
    response_code TEXT NOT NULL,
    auth_code     TEXT NOT NULL,
    stan          TEXT NOT NULL,
    rrn           TEXT NOT NULL,
    time_ms       BIGINT NOT NULL,
    received_ms   BIGINT NOT NULL
);
CREATE INDEX transactions_card ON transactions (card_id, time_ms);

-- Notifications per device, numbered by devices.notify_seq.
CREATE TABLE notifications (
    device_id  TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (device_id, seq)
);

-- Mi Cloud: reported locations (bounded history per device) and commands.
CREATE TABLE locations (
    id              TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL,
    latitude        TEXT NOT NULL,
    longitude       TEXT NOT NULL,
    accuracy_meters TEXT NOT NULL,
    time_ms         BIGINT NOT NULL,
    received_ms     BIGINT NOT NULL
);
CREATE INDEX locations_device ON locations (device_id, time_ms);

CREATE TABLE commands (
    id           TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    result       TEXT NOT NULL DEFAULT '',
    created_ms   BIGINT NOT NULL,
    delivered_ms BIGINT NOT NULL DEFAULT 0,
    done_ms      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX commands_device ON commands (device_id, state);
