-- The SMS outbox: every message, by recipient number. Ids come from one
-- counter row, taken inside the inserting transaction, so ids grow in commit
-- order and a reader polling with after=<last id> never skips a message.
CREATE TABLE sms_counter (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO sms_counter (name, value) VALUES ('message', 0);

CREATE TABLE sms_messages (
    id         BIGINT PRIMARY KEY,
    phone      TEXT NOT NULL,
    sender     TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX sms_messages_phone_id ON sms_messages (phone, id);
