-- A gate's offline store: the records it made (kept until the agency
-- cleared their batch), its local copy of the hotlist.
CREATE TABLE gate_records (
    tsn            BIGINT PRIMARY KEY,
    card_number    TEXT NOT NULL,
    offline_serial BIGINT NOT NULL,
    amount_minor   BIGINT NOT NULL,
    tx_type        INTEGER NOT NULL,
    terminal       TEXT NOT NULL,
    tx_date        TEXT NOT NULL,
    tx_time        TEXT NOT NULL,
    tac            TEXT NOT NULL,
    station        TEXT NOT NULL,
    batch_id       TEXT NOT NULL DEFAULT '',
    uploaded       INTEGER NOT NULL DEFAULT 0,
    created        BIGINT NOT NULL
);
CREATE INDEX gate_records_upload ON gate_records (uploaded, batch_id);

CREATE TABLE gate_hotlist (
    card_number TEXT PRIMARY KEY
);

CREATE TABLE gate_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
