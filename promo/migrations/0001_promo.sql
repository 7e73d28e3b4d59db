-- Campaigns with their money counters. budget_used and redemptions move only
-- by conditional UPDATEs (reserve: only while they stay within the limits;
-- release: only for a reservation that moved out of reserved/confirmed), so
-- several switch nodes sharing the database never overspend.
CREATE TABLE campaigns (
    id              TEXT PRIMARY KEY,
    issuer_id       TEXT NOT NULL,
    definition      TEXT NOT NULL,
    status          TEXT NOT NULL,
    budget_minor    BIGINT NOT NULL,
    budget_used     BIGINT NOT NULL,
    max_redemptions BIGINT NOT NULL,
    redemptions     BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX campaigns_issuer ON campaigns (issuer_id);

-- Per-card and per-account use of a campaign. scope: card_day (period is
-- the local date in the campaign's zone), card, account (period '').
CREATE TABLE counters (
    campaign_id TEXT NOT NULL,
    scope       TEXT NOT NULL,
    subject     TEXT NOT NULL,
    period      TEXT NOT NULL,
    used        BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, scope, subject, period)
);

-- One row per payment a campaign was applied to; id is the switch's
-- transaction id. state: reserved → confirmed, reserved/confirmed →
-- released (once: the UPDATE that moves it decides who gives back).
CREATE TABLE reservations (
    id             TEXT PRIMARY KEY,
    campaign_id    TEXT NOT NULL,
    card_key       TEXT NOT NULL,
    account_key    TEXT NOT NULL,
    period         TEXT NOT NULL,
    original_minor BIGINT NOT NULL,
    discount_minor BIGINT NOT NULL,
    multiplier     BIGINT NOT NULL,
    state          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX reservations_campaign ON reservations (campaign_id, state);

-- Embedded default campaign sets already seeded (never seeded twice, so a
-- bank's later edits are not overwritten).
CREATE TABLE seeded (
    name       TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
