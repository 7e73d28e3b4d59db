-- Bank operator keys that rotate and can be revoked (operator_auth.go,
-- operator_auth_keys.go). A bank may hold several keys at once: the new one
-- and old ones in their grace period. Only each key's SHA-256 is kept.
-- operator_banks has one row per bank that ever had a key: it decides which
-- node generates a bank's first key, and rotations of a bank lock it.
CREATE TABLE operator_banks (
    issuer_id  TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL
);

-- expires_ms: 0 never (until rotated), else refused from then on (grace
-- period of a rotated key). revoked_ms: 0 not revoked, else refused since.
CREATE TABLE operator_api_keys (
    key_hash   BYTEA PRIMARY KEY,
    issuer_id  TEXT NOT NULL REFERENCES operator_banks (issuer_id),
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL DEFAULT 0,
    revoked_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX operator_api_keys_issuer ON operator_api_keys (issuer_id);

-- The keys of operator_keys carry over, but for a key it held for several
-- banks (nothing kept MIPAY_ISSUER_OPERATOR_KEYS from giving two banks one
-- key): a key acts for one bank only, so it acts for none of them, and
-- those banks get no operator_banks row either: the next start makes each
-- a new key (or takes the one configured).
INSERT INTO operator_banks (issuer_id, created_ms)
    SELECT issuer_id, created_ms FROM operator_keys
    WHERE key_hash IN (SELECT key_hash FROM operator_keys GROUP BY key_hash HAVING COUNT(*) = 1);
INSERT INTO operator_api_keys (key_hash, issuer_id, created_ms)
    SELECT key_hash, issuer_id, created_ms FROM operator_keys
    WHERE key_hash IN (SELECT key_hash FROM operator_keys GROUP BY key_hash HAVING COUNT(*) = 1);
DROP TABLE operator_keys;
