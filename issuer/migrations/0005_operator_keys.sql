-- Bank operator API keys (operator_auth.go): one per bank, only its
-- SHA-256 is kept; the key itself is handed to the bank once.
CREATE TABLE operator_keys (
    issuer_id  TEXT PRIMARY KEY,
    key_hash   BYTEA NOT NULL,
    created_ms BIGINT NOT NULL
);
