-- The lost-phone portal's sign-in challenges: the password was right, a
-- second factor (the e-mailed code, or a recovery code) is awaited. The code
-- is kept as SHA-256 hex of "portal-code:<id>:<code>", never in clear.
CREATE TABLE portal_challenges (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    code_hash  TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX portal_challenges_expires ON portal_challenges (expires_ms);

-- The simulated e-mail outbox (stands in for the user's mailbox). Ids come
-- from one counter row taken inside the inserting transaction, so they grow
-- in commit order and a reader polling with after=<last id> skips nothing.
CREATE TABLE email_counter (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO email_counter (name, value) VALUES ('message', 0);

CREATE TABLE email_outbox (
    id         BIGINT PRIMARY KEY,
    address    TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX email_outbox_address_id ON email_outbox (address, id);
